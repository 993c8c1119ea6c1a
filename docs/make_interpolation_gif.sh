#!/usr/bin/env bash
# Make the README's interpolation GIF with the tool itself.
# Usage: docs/make_interpolation_gif.sh CKPT [OUT]   (OUT defaults to docs/img/interpolation.gif)
# Eight independent slerp paths (rows) between random latents of seed 1, shown side by side,
# 12 frames per segment, there and back (--loop) so the GIF loops without a jump.
set -euo pipefail
if [ $# -lt 1 ]; then
    echo "usage: $0 CKPT [OUT]" >&2
    exit 2
fi
ckpt=$1
out=${2:-"$(dirname "$0")/img/interpolation.gif"}
mkdir -p "$(dirname "$out")"
gantools interpolate "$ckpt" --rows 8 --seed 1 --steps 12 --loop --fps 12 --zoom 2 --device cpu -o "$out"
echo "$out" >&2
