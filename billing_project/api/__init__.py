"""The shared kit every API view of every app builds on."""
