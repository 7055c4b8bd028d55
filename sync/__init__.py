"""HubSpot -> MailerLite contact sync."""

__version__ = "0.2.0"
