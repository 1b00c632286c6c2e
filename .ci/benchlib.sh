# Shared by the .ci/bench-* scripts (sourced, not run): one
# measured lockbench round against a set of server processes, and the
# medians of the rounds.

tck=$(getconf CLK_TCK)

# totals PIDS...: user cpu ticks, system cpu ticks, read syscalls, write
# syscalls of the processes.
totals() {
  local u=0 s=0 r=0 w=0 p a
  for p in "$@"; do
    read -r -a a <"/proc/$p/stat"
    u=$((u + a[13]))
    s=$((s + a[14]))
    r=$((r + $(awk '/^syscr/{print $2}' "/proc/$p/io")))
    w=$((w + $(awk '/^syscw/{print $2}' "/proc/$p/io")))
  done
  echo "$u $s $r $w"
}

# field NAME JSON: a number from lockbench's one-line JSON summary.
field() { sed -E "s/.*\"$1\":([0-9.eE+-]+).*/\1/" <<<"$2"; }

# round LOCKBENCH BACKEND LABEL ADDRS MODE CLIENTS SECS PIDS...: runs
# lockbench's BACKEND (text, etcd) against ADDRS and prints one line:
# LABEL ops/s=... p99_us=... cpu_us/op=... user_us/op=... syscr/op=...
# syscw/op=... errors=... timeouts=... violations=..., where CPU (user
# and system; user_us/op is the user part) and syscalls are those of PIDS
# over the round, and violations counts lockbench's violations
# and lost updates. lockbench's stderr goes to $BENCHLOG if set. A round
# lockbench did not finish prints LABEL failed=1.
round() {
  local lb=$1 backend=$2 label=$3 addrs=$4 mode=$5 clients=$6 secs=$7
  shift 7
  local u0 s0 r0 w0 u1 s1 r1 w1 line ops
  read -r u0 s0 r0 w0 <<<"$(totals "$@")"
  line=$("$lb" "$backend" -addr "$addrs" -mode "$mode" -w "$clients" -d "${secs}s" -warmup 0s -json \
    2>>"${BENCHLOG:-/dev/null}" | grep '^{' || true)
  read -r u1 s1 r1 w1 <<<"$(totals "$@")"
  ops=$(field ops "$line")
  if [ -z "$line" ] || ! [ "${ops%.*}" -gt 0 ] 2>/dev/null; then
    echo "$label failed=1"
    return
  fi
  report "$label" "$ops" "$(field ops_per_s "$line")" "$(field acq_p99_us "$line")" $((u1 - u0)) $((s1 - s0)) $((r1 - r0)) $((w1 - w0)) \
    "$(field errors "$line")" "$(field timeouts "$line")" "$(($(field violations "$line") + $(field lost_updates "$line")))"
}

# report LABEL OPS OPS_PER_S P99_US USER_TICKS SYS_TICKS SYSCR SYSCW
# ERRORS TIMEOUTS VIOLATIONS: the one line a round prints.
report() {
  awk -v label="$1" -v ops="$2" -v ops_s="$3" -v p99="$4" -v du="$5" -v ds="$6" -v dr="$7" -v dw="$8" -v tck="$tck" \
    -v errs="$9" -v touts="${10}" -v viol="${11}" 'BEGIN {
      printf "%s ops/s=%d p99_us=%d cpu_us/op=%.1f user_us/op=%.1f syscr/op=%.2f syscw/op=%.2f errors=%d timeouts=%d violations=%d\n",
        label, ops_s, p99, (du + ds) / tck * 1e6 / ops, du / tck * 1e6 / ops, dr / ops, dw / ops, errs, touts, viol }'
}

# medians LABEL FILE: the medians of LABEL's rounds in FILE.
medians() {
  awk -v k="$1" '
    $1 == k && $2 !~ /^failed=/ { n++; for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1], n] = kv[2] } }
    function median(key,   a, i, j, t) {
      for (i = 1; i <= n; i++) a[i] = v[key, i] + 0
      for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] > a[j]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
      return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    END { printf "%-13s ops/s %6.0f  p99 %5.0f us  cpu %5.1f us/op (user %5.1f)  syscalls %.2f read %.2f write per op\n",
      k, median("ops/s"), median("p99_us"), median("cpu_us/op"), median("user_us/op"), median("syscr/op"), median("syscw/op") }' "$2"
}

# failures FILE: true if any round failed or reported errors or
# violations (timeouts of a contended wait are an outcome, not a failure).
failures() {
  awk '{ for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] ~ /^(failed|errors|violations)$/ && kv[2] + 0 > 0) bad = 1 } }
    END { exit !bad }' "$1"
}

# ready ELOCK ADDR...: true if every elock node at ADDR... is ready.
ready() {
  local cli=$1 a
  shift
  for a in "$@"; do
    "$cli" -addr "$a" stats 2>/dev/null | grep -q "node_ready 1" || return 1
  done
}

# quiet ELOCK ADDR...: waits (up to 30 s) until no elock node at ADDR...
# has a session left. A round's sessions outlive its connections by the
# session timeout, and their expiry sends releases to every owner: that
# work belongs to no later round, whichever server that round measures.
quiet() {
  local cli=$1 a open
  shift
  for _ in $(seq 300); do
    open=0
    for a in "$@"; do
      "$cli" -addr "$a" stats 2>/dev/null | grep -q "^STAT sessions 0" || open=1
    done
    [ $open = 0 ] && return 0
    sleep 0.1
  done
  echo "quiet: sessions still open on $* after 30 s" >&2
  return 1
}

# eround ELOCK LABEL MODE CLIENTS SECS PIDS -- ELOCKARGS...: one measured
# round of "elock ELOCKARGS... bench" (which speaks TLS, unlike
# lockbench), printed as round prints it; MODE is distinct or contended.
eround() {
  local cli=$1 label=$2 mode=$3 clients=$4 secs=$5 pids=() line ops u0 s0 r0 w0 u1 s1 r1 w1
  shift 5
  while [ "$1" != -- ]; do pids+=("$1"); shift; done
  shift
  read -r u0 s0 r0 w0 <<<"$(totals "${pids[@]}")"
  line=$("$cli" "$@" bench -mode "$mode" -clients "$clients" -duration "${secs}s" -warmup 0s -progress 0 -json \
    2>>"${BENCHLOG:-/dev/null}" | grep '^{' || true)
  read -r u1 s1 r1 w1 <<<"$(totals "${pids[@]}")"
  ops=$(field cycles "$line")
  if [ -z "$line" ] || ! [ "${ops%.*}" -gt 0 ] 2>/dev/null; then
    echo "$label failed=1"
    return
  fi
  report "$label" "$ops" "$(field cycles_per_s "$line")" "$(field acquire_p99_us "$line")" $((u1 - u0)) $((s1 - s0)) $((r1 - r0)) $((w1 - w0)) \
    "$(field errors "$line")" "$(field timeouts "$line")" "$(field violations "$line")"
}
