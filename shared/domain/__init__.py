"""Pure domain code: no I/O, no environment, no clock except where passed in."""
