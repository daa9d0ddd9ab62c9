"""ordermill's HTTP API: starts order workflows, signals and updates them, and reads orders."""
