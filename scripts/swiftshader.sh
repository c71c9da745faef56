#!/usr/bin/env bash
# Unpacks SwiftShader (Google's CPU Vulkan driver, shipped inside Debian's chromium-common) into
# DIR (default target/swiftshader) and prints the path of an ICD manifest that selects it:
#   VK_ICD_FILENAMES=$(scripts/swiftshader.sh) cargo test
# Needs `apt-get download` (Debian's package registry); nothing is installed system-wide.
set -euo pipefail
dir=$(realpath -m "${1:-target/swiftshader}")
lib="$dir/usr/lib/chromium/libvk_swiftshader.so"
icd="$dir/swiftshader_icd.json"
if [ ! -f "$lib" ]; then
    mkdir -p "$dir"
    (cd "$dir" && apt-get download chromium-common >/dev/null && dpkg -x chromium-common_*.deb . && rm chromium-common_*.deb)
fi
[ -f "$lib" ] || { echo "swiftshader.sh: chromium-common has no libvk_swiftshader.so" >&2; exit 1; }
printf '{"file_format_version": "1.0.0", "ICD": {"library_path": "%s", "api_version": "1.0.5"}}\n' "$lib" >"$icd"
echo "$icd"
