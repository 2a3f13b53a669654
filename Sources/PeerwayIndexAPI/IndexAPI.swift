// Placeholder: the management API lands here (issue 6).
import PeerwayIndex
