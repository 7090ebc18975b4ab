"""osflow: show how OpenStack services talk to each other, from a packet capture."""

__version__ = "0.1.0"
