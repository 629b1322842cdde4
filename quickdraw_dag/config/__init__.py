"""Typed, validated parameters: the schema, reading and writing params YAML, where outputs may go."""
