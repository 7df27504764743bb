#!/bin/sh
# Install llmops with its serving dependencies into the active Python environment: the one install
# recipe of the container images (Dockerfile, Dockerfile.cuda), run the same way by a test in a fresh
# virtual environment (tests/deploy/test_container_install.py).
#
#   install.sh SOURCE_DIR
#
# Environment (all optional):
#   TORCH_VARIANT    cpu (default) or a CUDA tag of the PyTorch index, e.g. cu128
#   TORCH_INDEX_URL  where the torch wheel comes from; default https://download.pytorch.org/whl/$TORCH_VARIANT;
#                    set it empty to use pip's configured indexes (an offline mirror, a wheel folder)
#   LLMOPS_EXTRAS    the extras installed with llmops (default: what the gateway and replicas need)
#   PIP_INSTALL_ARGS more arguments for both pip calls (e.g. --dry-run to check resolution only)
set -eu

src="${1:?usage: install.sh SOURCE_DIR}"
# The one torch pin of the images; the Makefile pins the same version for development.
TORCH_VERSION="2.13.0"
variant="${TORCH_VARIANT:-cpu}"
case "$variant" in
  cpu | cu[0-9][0-9][0-9]) ;;
  *) echo "install.sh: TORCH_VARIANT must be cpu or a CUDA tag such as cu128, not '$variant'" >&2; exit 2 ;;
esac
index="${TORCH_INDEX_URL-https://download.pytorch.org/whl/$variant}"
extras="${LLMOPS_EXTRAS-serve,postgres,redis,monitor,security,tracing}"
args="${PIP_INSTALL_ARGS:-}"

# torch first, from the index of its variant: an unpinned torch from PyPI would pull a CUDA build.
# shellcheck disable=SC2086
python -m pip install $args ${index:+--index-url "$index"} "torch==${TORCH_VERSION}"

# then llmops itself; the constraint keeps the torch just installed (the variant's local version,
# e.g. 2.13.0+cpu, satisfies it, so pip does not swap it for PyPI's build).
constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
echo "torch==${TORCH_VERSION}" > "$constraints"
# shellcheck disable=SC2086
python -m pip install $args --constraint "$constraints" "${src}${extras:+[$extras]}"
