"""`python -m bench`: the same as `make bench`."""

from bench.main import main

main()
