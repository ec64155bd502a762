#!/usr/bin/env bash
# Full TCP connect scan of 127.0.0.1 (all 65 535 ports): `portwarden scan` vs `nmap -sT -p-`,
# on the same machine, in the same sitting, alternating runs. Prints every time, the medians,
# the ratio, and whether both found the same open ports.
#
#   bench/scan-vs-nmap.sh [REPS]      (default 5; builds the release binary first)
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${1:-5}
command -v nmap >/dev/null || { echo "nmap is missing: apt-get install -y nmap" >&2; exit 1; }
cargo build --release -q -p portwarden
PW=target/release/portwarden
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

now() { date +%s.%N; }
pw_times=(); nmap_times=()
for i in $(seq 1 "$REPS"); do
  t0=$(now); "$PW" scan 127.0.0.1 --ports all --no-banners --format csv > "$tmp/pw.csv"; t1=$(now)
  nmap -sT -p- -n -Pn --open -oG "$tmp/nmap.txt" 127.0.0.1 > /dev/null; t2=$(now)
  pw_times+=("$(echo "$t1 - $t0" | bc -l)"); nmap_times+=("$(echo "$t2 - $t1" | bc -l)")
  printf 'run %d: portwarden %.3f s   nmap %.3f s\n' "$i" "${pw_times[-1]}" "${nmap_times[-1]}"
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
pm=$(median "${pw_times[@]}"); nm=$(median "${nmap_times[@]}")
printf 'median: portwarden %.3f s, nmap -sT -p- %.3f s; nmap/portwarden = %.2f (above 1: portwarden is faster)\n' \
  "$pm" "$nm" "$(echo "$nm / $pm" | bc -l)"
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r)"
pw_open=$(tail -n +2 "$tmp/pw.csv" | awk -F, '$5=="open" {print $3}' | sort -n | tr '\n' ' ')
nmap_open=$(grep -o '[0-9]*/open/tcp' "$tmp/nmap.txt" | cut -d/ -f1 | sort -n | tr '\n' ' ')
if [ "$pw_open" = "$nmap_open" ]; then echo "same open ports (last run): $pw_open"
else echo "open ports differ (last run; listeners may have come and gone):"; echo "  portwarden: $pw_open"; echo "  nmap:       $nmap_open"; fi
