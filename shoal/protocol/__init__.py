"""Pure codecs: bytes in, records out, and back. No IO, no clock, no configuration."""
