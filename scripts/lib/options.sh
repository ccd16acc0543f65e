# shellcheck shell=bash disable=SC2034  # OPT_SHIFT and BUILD_DIR are read by the sourcing script
# scripts/lib/options.sh: the option preamble shared by the shell drivers (scripts/*.sh and
# benchmark/*.sh). Source it before any `cd` (the help is read from the script's own file),
# name the script, set the default of BUILD_DIR if the script takes --build-dir, and keep
# only the script's own options in its case statement:
#
#   . "$(dirname "$0")/lib/options.sh"            # from benchmark/: ../scripts/lib/options.sh
#                                                   # (with "# shellcheck source=scripts/lib/options.sh")
#   opt_init compare_echo                           # every message starts "compare_echo: "
#   BUILD_DIR=build/release                         # enables --build-dir DIR
#   parse_options "--size=SIZE --json:JSON=1" "$@"  # the script's own options, as a table
#   need_uint --size "$SIZE" 1                      # a whole number >= 1, or exit 2
#
# parse_options reads its table once per word: "--name=VAR" takes a value into VAR (an
# empty or missing value is refused), "--name:VAR=WORD" is a switch that sets VAR to WORD.
# Every other word goes to common_option, which takes -h/--help (prints the script's
# header comment, exits 0) and --build-dir DIR (where BUILD_DIR is set, even to ""), and
# refuses anything else. Every refusal is one line on stderr, "NAME: what", and exit
# status 2, as in the C++ programs (support/args.h).

OPT_NAME=$(basename "$0" .sh)
OPT_SCRIPT=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
OPT_SHIFT=1

# opt_init NAME: the name that starts every message.
opt_init() { OPT_NAME=$1; }

# opt_die MESSAGE...: "NAME: MESSAGE" on stderr, exit 2 (a bad command line).
opt_die() {
  echo "$OPT_NAME: $*" >&2
  exit 2
}

# opt_usage [STATUS]: the script's header comment (the lines after #! up to the first line
# that is not a comment), without the leading "# ", then exit STATUS (default 0).
opt_usage() {
  sed -n '2,${/^#/!q;s/^# \{0,1\}//;p}' "$OPT_SCRIPT"
  exit "${1:-0}"
}

# need_value "$@": fail unless the option in $1 is followed by a non-empty value.
need_value() {
  if [ $# -lt 2 ] || [ -z "$2" ]; then opt_die "$1: missing value"; fi
}

# need_uint OPTION VALUE [MIN]: fail unless VALUE is a whole number >= MIN (default 0).
need_uint() {
  if ! [[ $2 =~ ^[0-9]+$ ]] || ((10#$2 < ${3:-0})); then opt_die "$1: expected an integer >= ${3:-0}, got '$2'"; fi
}

# common_option "$@": the options every driver shares; sets OPT_SHIFT to the words it took.
common_option() {
  case "$1" in
    -h | --help) opt_usage 0 ;;
    --build-dir)
      [ -n "${BUILD_DIR+set}" ] || opt_die "unknown option '$1' (--help lists the options)"
      need_value "$@"
      BUILD_DIR=$2
      OPT_SHIFT=2
      ;;
    *) opt_die "unknown option '$1' (--help lists the options)" ;;
  esac
}

# parse_options TABLE "$@": every word of the command line, by the table described above.
parse_options() {
  local table=" $1 " entry
  shift
  while [ $# -gt 0 ]; do
    if [[ $table == *" $1="* ]]; then
      entry=${table#*" $1="}
      need_value "$@"
      printf -v "${entry%% *}" '%s' "$2"
      shift 2
    elif [[ $table == *" $1:"* ]]; then
      entry=${table#*" $1:"}
      entry=${entry%% *}
      printf -v "${entry%%=*}" '%s' "${entry#*=}"
      shift
    else
      common_option "$@"
      shift "$OPT_SHIFT"
    fi
  done
}
