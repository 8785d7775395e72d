"""The local emulation of hosted Supabase plus the functions: see stack.py."""
