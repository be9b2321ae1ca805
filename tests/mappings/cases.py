"""The golden cases and the demo environment the shipped examples need."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "mappings"
CASES_DIR = Path(__file__).resolve().parent

#: Every variable the shipped examples use, with the test secrets of the sender fixtures.
DEMO_ENV = {
    "FB_APP_SECRET": "fb_test_app_secret_0123456789abcdef",
    "FB_VERIFY_TOKEN": "hub-verify-token-example",
    "FB_PAGE_TOKEN": "fb-page-token-example",
    "GOOGLE_KEY": "gk_test_7c1e2b",
    "TYPEFORM_SECRET": "tf_test_secret_9f8e7d",
    "ZAPIER_TOKEN": "zap_test_token_5a4b3c",
    "UNBOUNCE_TOKEN": "ub_test_token_1d2e3f",
    "JOTFORM_TOKEN": "jf_test_token_7g8h9i",
}


def case_dirs() -> list[Path]:
    """Every case directory (one holding an ``endpoint`` file)."""
    return sorted(p.parent for p in CASES_DIR.glob("*/endpoint"))
