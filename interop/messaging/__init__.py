"""Norwegian messaging in the service: addressing from the FHIR address book, composing PLO
messages to GPs, and receiving KITH messages and AppRecs."""
