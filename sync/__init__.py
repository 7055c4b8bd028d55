"""HubSpot -> MailerLite contact sync."""

__version__ = "0.1.0"
