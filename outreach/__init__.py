"""outreach: email follow-up sequences that stop the moment a person answers."""

__version__ = "0.1.0"
