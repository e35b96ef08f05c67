#!/usr/bin/env bash
# Induces the stage-1 lexicons MUSE lacks (Swahili, Telugu, Nepali, Marathi, Kannada) without parallel
# data, into the lingualift cache, where the pipeline's `lexicons.induced` languages read them
# (<cache>/lexicons/induced/en-XX.tsv; docs/lexicon-induction.md has the method and the measured quality):
#   bash scripts/lexicons.sh                  # sw,te,ne,mr,kn, 20,000 words each
#   LANGS=sw WORDS=5000 bash scripts/lexicons.sh
# 1. Debian packages: hunspell/aspell spell-checking dictionaries (the word lists) and FreeDict
#    English-Swahili (only the evaluation reference for Swahili, never used to induce).
# 2. `lingualift lexicon wordlist`: each dictionary's words ranked by the encoder's unigram tokenizer.
# 3. `lingualift lexicon induce` with the encoder (multilingual-e5-small; built by `lingualift assets` on
#    first use): identity mapping + CSLS, no Procrustes refinement (in the encoder's shared space it
#    lowered P@1 on bn, hi and ta), P@1 against FreeDict for Swahili.
# About 3-6 minutes per language on 2 shared CPU cores; word vectors are cached, so a rerun is faster.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
langs="${LANGS:-sw,te,ne,mr,kn}"
words="${WORDS:-20000}"
packages=(aspell hunspell-sw hunspell-te hunspell-ne aspell-mr aspell-kn dict-freedict-eng-swh dict-freedict-swh-eng)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "[lexicons] installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" > /dev/null
fi
# shellcheck source=scripts/env.sh
source "$repo/scripts/env.sh"
cd "$repo"
out=$(python -c "from lingualift.data.lexicon import induced_lexicon_dir; print(induced_lexicon_dir())")
lingualift lexicon wordlist --langs "$langs" --words "$words" --out "$out/wordlists"
corpora=""
for lang in ${langs//,/ }; do corpora+="$lang=$out/wordlists/$lang.txt,"; done
reference=none
[[ ",$langs," == *",sw,"* ]] && reference="sw=freedict:swh"
lingualift lexicon induce --langs "$langs" --corpus "${corpora%,}" --words "$words" --refinements 0 \
  --reference "$reference" --out "$out"
echo "[lexicons] en-XX.tsv, word lists and report.json in $out"
