"""Core types, input validation and the method registry (imports nothing else from gradinfo)."""
