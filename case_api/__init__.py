"""Case handling: verification, examination and resolution of reports."""
