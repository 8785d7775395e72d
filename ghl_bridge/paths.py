"""Where things live in a checkout of the project."""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS_DIR = PROJECT_ROOT / "functions"
SHARED_DIR = PROJECT_ROOT / "shared"
MIGRATIONS_DIR = PROJECT_ROOT / "supabase" / "migrations"
SEED_SQL = PROJECT_ROOT / "supabase" / "seed.sql"
BOOTSTRAP_SQL = Path(__file__).resolve().parent / "stack" / "bootstrap.sql"
NODE_TOOLS_DIR = PROJECT_ROOT / "tools" / "postgrest"
DEFAULT_STATE_DIR = PROJECT_ROOT / ".stack"


def function_folders() -> dict[str, Path]:
    """Deployable functions: `functions/<folder>/main.py`, named with dashes (ghl_call_webhook -> ghl-call-webhook)."""
    if not FUNCTIONS_DIR.exists():
        return {}
    return {
        folder.name.replace("_", "-"): folder
        for folder in sorted(FUNCTIONS_DIR.iterdir())
        if (folder / "main.py").is_file()
    }
