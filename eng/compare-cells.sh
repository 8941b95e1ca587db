#!/usr/bin/env bash
# Fills docs/data/compare-cache/ with the 1,000-sample cells the comparison pages table (issues 14 and 15), one bit
# setting at a time, most important first. Cached cells are loaded, not recomputed, so the script resumes where a
# previous run stopped; commit the new cell files after each column. Several hours on 2 cores.
#   eng/compare-cells.sh            every column
#   eng/compare-cells.sh W3A3 W4A8  only these columns
set -euo pipefail
cd "$(dirname "$0")/.."
cache=docs/data/compare-cache
table1=adatsq-svd,svdquant,rtn,viditq,qdit,quarot,smoothquant,gptq-svd,gptq,ptq4dit,adatsq
run() { ./run.sh compare --samples 1000 --bits "$1" --methods "$2" --judge "$3" --cache "$cache" --out "artifacts/compare-$1"; }
columns=("$@")
[ ${#columns[@]} -eq 0 ] && columns=(W4A4 W3A3 W4A8 W8A8 W6A6 W4A16 W3A16 W2A16)
for bits in "${columns[@]}"; do
  case "$bits" in
    W4A4|W3A3) run "$bits" "$table1" adatsq-svd ;;                                      # issue 14: the paper's Table 1
    W4A8|W8A8) run "$bits" "$table1,htg,htg-gptq,tqdit" adatsq-svd ;;                    # issue 14 + issue 15's TQ-DiT / HTG
    W6A6) run "$bits" rtn,gptq,smoothquant,htg,htg-gptq,tqdit htg ;;                     # issue 15: TQ-DiT / HTG at W6A6
    W4A16|W3A16|W2A16) run "$bits" rtn,gptq,d2quant d2quant ;;                           # issue 15: D²Quant, weight-only
    *) echo "unknown column $bits" >&2; exit 2 ;;
  esac
done
