"""What two or more aduan services use: settings, database, events, auth, problems."""
