"""envkit: declarative, checked recipes for ML environments."""

__version__ = "0.1.0"
