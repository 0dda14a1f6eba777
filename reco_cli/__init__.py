"""reco: recommendations from behavioural event logs, measured offline and in business terms."""

__version__ = "0.1.0"
