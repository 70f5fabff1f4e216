#!/usr/bin/env bash
# Build a real kube-apiserver and kube-scheduler (v1.20, from Debian's own `kubernetes` source
# package, with Debian's Go) and unpack Debian's etcd, once per machine, into a cache folder that
# the Kubernetes runtime tests use (tests/runtime/kube_cluster.py). Prints the folder.
#
#   bash scripts/kubernetes.sh        # ~9 min and ~2 GB of disk on 2 cores the first time; then a no-op
#
# The system's apt sources are never changed: the deb-src entry lives in a private apt configuration
# (APT_CONFIG) inside the cache folder, with its own lists. Installing the build tools (golang-go,
# rsync, dpkg-dev) and downloading etcd-server's .deb use the system's apt and need root.
# Nothing built here belongs in the repository: the cache is outside it.
set -euo pipefail

CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/serverless-emulator/kubernetes-1.20"
BIN="$CACHE/bin"
need=(kube-apiserver kube-scheduler etcd)

have_all() { local b; for b in "${need[@]}"; do [ -x "$BIN/$b" ] || return 1; done; }
if have_all; then
  echo "$CACHE"
  exit 0
fi

[ "$(id -u)" = 0 ] || { echo "error: the first build needs root (apt-get); run: sudo bash $0" >&2; exit 1; }
command -v apt-get >/dev/null || { echo "error: apt-get not found (a Debian machine is needed)" >&2; exit 1; }
mkdir -p "$BIN" "$CACHE/apt/lists/partial" "$CACHE/apt/cache/archives/partial" "$CACHE/apt/sources.list.d" "$CACHE/src"
export DEBIAN_FRONTEND=noninteractive

echo "==> build tools (golang-go, rsync, dpkg-dev) from the system's apt" >&2
missing=()
for p in golang-go rsync dpkg-dev make gcc; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -q >&2
  apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi

# The private apt configuration: the system's deb lines turned into deb-src lines, own lists and cache.
cat >"$CACHE/apt/apt.conf" <<EOF
Dir::Etc::SourceList "$CACHE/apt/sources.list";
Dir::Etc::SourceParts "$CACHE/apt/sources.list.d";
Dir::State::Lists "$CACHE/apt/lists";
Dir::Cache "$CACHE/apt/cache";
EOF
: >"$CACHE/apt/sources.list"
for f in /etc/apt/sources.list.d/*.sources; do
  [ -e "$f" ] || continue
  sed -e 's/^Types: deb$/Types: deb-src/' "$f" >"$CACHE/apt/sources.list.d/$(basename "$f")"
done
if [ -f /etc/apt/sources.list ]; then
  sed -n -e 's/^deb \(.*\)/deb-src \1/p' /etc/apt/sources.list >"$CACHE/apt/sources.list"
fi
export APT_CONFIG="$CACHE/apt/apt.conf"

if ! [ -x "$BIN/etcd" ]; then
  echo "==> etcd-server (Debian's .deb, unpacked into the cache; no service is installed)" >&2
  tmp=$(mktemp -d)
  # the binary packages come from the system's lists (deb lines), not the private deb-src ones
  (cd "$tmp" && env -u APT_CONFIG apt-get update -q >&2 && env -u APT_CONFIG apt-get download -q etcd-server >&2)
  dpkg-deb -x "$tmp"/etcd-server_*.deb "$tmp/x"
  install -m 0755 "$tmp/x/usr/bin/etcd" "$BIN/etcd"
  rm -rf "$tmp"
fi

if ! [ -x "$BIN/kube-apiserver" ] || ! [ -x "$BIN/kube-scheduler" ]; then
  echo "==> apt-get source kubernetes (private deb-src configuration)" >&2
  apt-get update -q >&2
  cd "$CACHE/src"
  if ! ls -d kubernetes-*/ >/dev/null 2>&1; then
    apt-get source -q kubernetes >&2
  fi
  tree=$(ls -d "$CACHE"/src/kubernetes-*/ | head -1)
  cd "$tree"
  echo "==> make WHAT='cmd/kube-apiserver cmd/kube-scheduler' in $tree (about 9 minutes on 2 cores)" >&2
  started=$(date +%s)
  nice -n 10 make WHAT="cmd/kube-apiserver cmd/kube-scheduler" >&2
  echo "    built in $(( $(date +%s) - started )) s" >&2
  for b in kube-apiserver kube-scheduler; do
    install -m 0755 "$(find _output -type f -name "$b" -perm -u+x | head -1)" "$BIN/$b"
  done
  # the source tree and build output (~2 GB) are not needed once the binaries are cached
  cd "$CACHE" && rm -rf "$CACHE/src"
fi

have_all || { echo "error: binaries missing in $BIN after the build" >&2; exit 1; }
echo "$CACHE"
