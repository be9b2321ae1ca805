"""Lead Hub: a self-hosted webhook router that turns lead webhooks into LeadSquared leads."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
