"""HTTP routes of the registry service (thin: authorise, validate, call a service class)."""
