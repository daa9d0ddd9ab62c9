"""`make bench`: ordermill's throughput and latency against the Temporal ceiling on one server.

See bench/main.py for what runs and what each figure means.
"""
