"""energy_tracker add-on service: serial meter -> power and energy -> authenticated API."""

__version__ = "0.3.23"
