"""Stock `ray.serve.llm.build_openai_app` with lab-llm's engine settings and no gate (a benchmark baseline).

Started by `serve_overhead.py --ray-baseline`: it separates what Ray Serve + `ray.serve.llm` cost over `vllm serve`
from what lab-llm's own ingress (FastAPI gate, API-key lookup, model check) adds on top. The engine settings come
from the same `AppConfig` through lab-llm's own `to_llm_config`, so the engine is configured identically.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True, help="lab-llm configuration (only `engine`/`serving`)")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--num-cpus", type=int, default=6)
    args = parser.parse_args(argv)

    import ray
    from ray import serve
    from ray.serve.llm import build_openai_app

    from lab_llm.app.builder import to_llm_config
    from lab_llm.config import load_config

    llm_config = to_llm_config(load_config(args.config))
    ray.init(address="local", num_cpus=args.num_cpus)
    serve.start(http_options={"host": "127.0.0.1", "port": args.port})
    serve.run(build_openai_app({"llm_configs": [llm_config]}), name="ray-serve-llm", route_prefix="/", blocking=True)


if __name__ == "__main__":
    main()
