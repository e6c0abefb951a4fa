"""The shared API kit every app's ``api/`` builds on: Lago error codes and bodies,
pagination, request parsing, wire formats, the base view, request safety nets and the
OpenAPI docs. It sits below every app and imports none."""
