#!/bin/bash
# Notebook start-up (run by the lifecycle configuration, as root, in the background):
# install fl_runtime and its pinned dependencies into a Python 3.11 virtualenv, offline, from this bundle.
#   usage: install.sh BUNDLE_DIR VENV_DIR
# The notebook has no internet: wheels come from the bundle; python3.11 (if the image lacks it) from the
# Amazon Linux 2023 repositories, which the S3 gateway endpoint serves.
set -euo pipefail
bundle_dir=$1
venv_dir=$2
python=python3.11
if ! command -v "$python" >/dev/null 2>&1; then
  dnf install -y python3.11
fi
rm -rf "$venv_dir"
"$python" -m venv "$venv_dir"
"$venv_dir/bin/python" -m pip install --quiet --disable-pip-version-check \
  --no-index --find-links "$bundle_dir/wheels" -r "$bundle_dir/requirements-notebook.txt"
# fl_runtime is used in place: `python -m fl_runtime ...` works from anywhere
site_packages=$("$venv_dir/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$bundle_dir" > "$site_packages/fl_runtime_bundle.pth"
"$venv_dir/bin/python" -m fl_runtime --help >/dev/null
echo "fl_runtime installed: $venv_dir/bin/python -m fl_runtime"
