"""The Ray Serve application: vLLM through `ray.serve.llm`, with lab-llm's OAuth2/JWT gate in front.

Ray Serve import path: `lab_llm.app:build_app`; its `args` are one `lab_llm.config.AppConfig` mapping.
"""

from lab_llm.app.builder import build_app

__all__ = ["build_app"]
