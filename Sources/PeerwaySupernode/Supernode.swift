// Supernode services.
