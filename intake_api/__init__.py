"""Intake: partner agencies and assistants record complaints here."""
