// Placeholder: the management API's tests land here (issue 6).
import Testing
