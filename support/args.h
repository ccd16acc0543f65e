// The command-line parser of every program in benchmark/ and examples/. A program declares
// its options and positional arguments, each bound to a variable, then calls parse():
//
//   galay::cli::Parser args("echo_server", "[PORT] [options]");
//   args.positional_integer("PORT", "TCP port, 0 for any (default 8080)", port, 0, 65535, false)
//       .integer("-p, --port", "PORT", "the same as PORT", port, 0, 65535)
//       .backend(backend)
//       .flag("--verbose", "print every connection", verbose);
//   args.parse(argc, argv);
//
// Accepted forms: `--name value`, `--name=value` (names starting with "--"), `-n value`,
// flags alone, positionals anywhere, and `--` to end the options. `--help` (and `-h` and
// `-?`, unless the program uses `-h` for something else) prints the usage to stdout and
// exits 0. Anything wrong prints one line to stderr naming the option and the value, e.g.
//
//   bench_server: --threads: expected an integer in [1, 1024], got 'x'
//
// and exits 2. A later check of the program's own can report the same way with fail().
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "galay-kernel/net/address.h"
#include "galay-kernel/io/detail/backend.h"
#include "parse.h"

namespace galay::cli {

/// Exit status for a bad command line.
inline constexpr int kUsageError = 2;

class Parser {
 public:
  /// Takes a value and stores it; returns "" if the value was taken, otherwise what was
  /// expected ("an integer in [1, 8]"), which the error message completes with the value.
  using Convert = std::function<std::string(std::string_view)>;

  /// `program` starts every message; `synopsis` follows "usage: program" in the help.
  Parser(std::string program, std::string synopsis) : program_(std::move(program)), synopsis_(std::move(synopsis)) {}

  /// An option with a value. `names` is a comma-separated list ("-t, --threads"); `meta`
  /// names the value in the help ("N").
  Parser& option(std::string_view names, std::string_view meta, std::string_view help, Convert convert) {
    options_.push_back(Option{split_names(names), std::string(meta), std::string(help), std::move(convert), {}});
    return *this;
  }

  /// A flag that may carry a value inline (`--name` or `--name=value`, never `--name value`):
  /// alone it calls `set`, with a value `convert`. `meta` names the value ("CPU").
  Parser& flag_with_value(std::string_view names, std::string_view meta, std::string_view help,
                          std::function<void()> set, Convert convert) {
    options_.push_back(Option{split_names(names), "[=" + std::string(meta) + "]", std::string(help), std::move(convert),
                              std::move(set)});
    return *this;
  }

  /// A flag: its presence sets `out` to `value`.
  Parser& flag(std::string_view names, std::string_view help, bool& out, bool value = true) {
    options_.push_back(Option{split_names(names), {}, std::string(help), {}, [&out, value] { out = value; }});
    return *this;
  }

  /// Any text.
  Parser& text(std::string_view names, std::string_view meta, std::string_view help, std::string& out) {
    return option(names, meta, help, [&out](std::string_view v) {
      out = std::string(v);
      return std::string();
    });
  }

  /// A decimal integer in [lo, hi] (T must hold hi).
  template <class T>
  Parser& integer(std::string_view names, std::string_view meta, std::string_view help, T& out, std::uint64_t lo,
                  std::uint64_t hi) {
    return option(names, meta, help, integer_into(out, lo, hi));
  }

  /// A byte count in [lo, hi], with optional K/M/G suffixes (parse_size).
  template <class T>
  Parser& size(std::string_view names, std::string_view meta, std::string_view help, T& out, std::uint64_t lo,
               std::uint64_t hi) {
    return option(names, meta, help, [&out, lo, hi](std::string_view v) {
      auto n = parse_size(v, lo, hi);
      if (!n) return "a size in [" + std::to_string(lo) + ", " + std::to_string(hi) + "] (K/M/G suffixes allowed)";
      out = static_cast<T>(*n);
      return std::string();
    });
  }

  /// A real number in [lo, hi], or (lo, hi] with `open_low`.
  Parser& real(std::string_view names, std::string_view meta, std::string_view help, double& out, double lo, double hi,
               bool open_low = false) {
    return option(names, meta, help, [&out, lo, hi, open_low](std::string_view v) {
      auto x = parse_real(v, lo, hi, open_low);
      if (!x) return std::string("a number in ") + (open_low ? "(" : "[") + number(lo) + ", " + number(hi) + "]";
      out = *x;
      return std::string();
    });
  }

  /// One word of a fixed list, each mapped to a value: choice("--recv", ..., pooled,
  /// {{"pooled", true}, {"plain", false}}).
  template <class T>
  Parser& choice(std::string_view names, std::string_view meta, std::string_view help, T& out,
                 std::initializer_list<std::pair<std::string_view, T>> words) {
    using Words = std::vector<std::pair<std::string_view, T>>;
    return option(names, meta, help, [&out, list = Words(words)](std::string_view v) {
      std::string expected;
      for (const auto& [word, value] : list) {
        if (v == word) {
          out = value;
          return std::string();
        }
        expected += (expected.empty() ? "one of " : ", ") + std::string(word);
      }
      return expected;
    });
  }

  /// --backend NAME: epoll, io_uring, kqueue or auto (galay::parse_backend_kind).
  Parser& backend(BackendKind& out, std::string_view names = "--backend") {
    const std::string help = "I/O backend: epoll|io_uring|kqueue|auto (default " + std::string(to_string(out)) + ")";
    return option(names, "NAME", help, [&out](std::string_view v) {
      auto kind = parse_backend_kind(v);
      if (!kind) return std::string("one of epoll, io_uring, kqueue, auto");
      out = *kind;
      return std::string();
    });
  }

  /// `--sqpoll[=CPU]`: io_uring with a kernel thread polling the submission queue
  /// (Scheduler::Options::io_uring_sqpoll), pinned to CPU when one is given.
  Parser& sqpoll(bool& on, int& cpu) {
    return flag_with_value(
        "--sqpoll", "CPU", "io_uring: a kernel thread polls the submission queue (pinned to CPU if given)",
        [&on] { on = true; },
        [&on, &cpu](std::string_view v) {
          auto n = parse_uint(v, 0, 4095);
          if (!n) return std::string("a CPU number in [0, 4095]");
          on = true;
          cpu = static_cast<int>(*n);
          return std::string();
        });
  }

  /// An IP address literal to bind or connect to (galay::SocketAddress::parse; no names).
  Parser& host(std::string& out, std::string_view names = "--host", std::string_view help = {}) {
    const std::string text = help.empty() ? "literal IPv4/IPv6 address (default " + out + ")" : std::string(help);
    return option(names, "ADDR", text, [&out](std::string_view v) {
      if (!SocketAddress::parse(v, 0)) return std::string("a literal IPv4 or IPv6 address");
      out = std::string(v);
      return std::string();
    });
  }

  /// The next positional argument; `required` ones must all come before optional ones.
  Parser& positional(std::string_view meta, std::string_view help, Convert convert, bool required = true) {
    positionals_.push_back(Positional{std::string(meta), std::string(help), std::move(convert), required});
    return *this;
  }
  /// A positional argument kept as text.
  Parser& positional(std::string_view meta, std::string_view help, std::string& out, bool required = true) {
    return positional(
        meta, help,
        [&out](std::string_view v) {
          out = std::string(v);
          return std::string();
        },
        required);
  }
  /// A positional decimal integer in [lo, hi].
  template <class T>
  Parser& positional_integer(std::string_view meta, std::string_view help, T& out, std::uint64_t lo, std::uint64_t hi,
                             bool required = true) {
    return positional(meta, help, integer_into(out, lo, hi), required);
  }

  /// Parse argv, storing every value. Prints the help and exits 0 on --help; prints one
  /// line and exits 2 on anything wrong.
  void parse(int argc, char** argv) {
    std::size_t next_positional = 0;
    bool options_done = false;
    for (int i = 1; i < argc; ++i) {
      const std::string_view arg = argv[i];
      if (options_done || arg.size() < 2 || arg.front() != '-') {
        if (next_positional == positionals_.size()) fail("unexpected argument '" + std::string(arg) + "'");
        const Positional& p = positionals_[next_positional++];
        check(p.meta, arg, p.convert(arg));
        continue;
      }
      if (arg == "--") {
        options_done = true;
        continue;
      }
      if (is_help(arg)) {
        print_usage(stdout);
        std::exit(0);
      }
      std::string_view name = arg, value;
      bool inline_value = false;
      if (arg.starts_with("--")) {
        if (auto eq = arg.find('='); eq != std::string_view::npos) {
          name = arg.substr(0, eq);
          value = arg.substr(eq + 1);
          inline_value = true;
        }
      }
      const Option* opt = find(name);
      if (opt == nullptr) fail("unknown option '" + std::string(name) + "' (--help lists the options)");
      if (opt->set) {
        if (inline_value && !opt->convert)
          fail(std::string(name) + ": takes no value, got '" + std::string(value) + "'");
        if (inline_value) {
          check(name, value, opt->convert(value));
        } else {
          opt->set();
        }
        continue;
      }
      if (!inline_value) {
        if (i + 1 >= argc) fail(std::string(name) + ": missing value");
        value = argv[++i];
      }
      check(name, value, opt->convert(value));
    }
    for (std::size_t k = next_positional; k < positionals_.size(); ++k)
      if (positionals_[k].required) fail("missing " + positionals_[k].meta + " (--help shows the usage)");
  }

  /// Report a bad command line found after parse(): "program: message", exit 2.
  [[noreturn]] void fail(const std::string& message) const {
    std::fprintf(stderr, "%s: %s\n", program_.c_str(), message.c_str());
    std::exit(kUsageError);
  }

  /// The help: the synopsis, then one line per positional and option.
  void print_usage(std::FILE* out) const {
    std::fprintf(out, "usage: %s %s\n", program_.c_str(), synopsis_.c_str());
    std::vector<std::pair<std::string, const std::string*>> rows;
    for (const Positional& p : positionals_) rows.emplace_back(p.meta, &p.help);
    for (const Option& o : options_) {
      std::string left;
      for (const std::string& n : o.names) left += (left.empty() ? "" : ", ") + n;
      if (!o.meta.empty()) left += (o.meta.front() == '[' ? "" : " ") + o.meta;  // "--x[=V]" vs "--x V"
      rows.emplace_back(std::move(left), &o.help);
    }
    std::size_t width = 0;
    for (const auto& row : rows) width = std::max(width, row.first.size());
    for (const auto& [left, help] : rows) {
      std::fprintf(out, "  %-*s  ", static_cast<int>(width), left.c_str());
      for (char c : *help) {  // continuation lines of a help text line up with its first
        std::fputc(c, out);
        if (c == '\n') std::fprintf(out, "  %-*s  ", static_cast<int>(width), "");
      }
      std::fputc('\n', out);
    }
  }

 private:
  struct Option {
    std::vector<std::string> names;
    std::string meta, help;
    Convert convert;            // options with a value (and flags that may take one inline)
    std::function<void()> set;  // flags
  };
  struct Positional {
    std::string meta, help;
    Convert convert;
    bool required;
  };

  static std::vector<std::string> split_names(std::string_view names) {
    std::vector<std::string> out;
    while (!names.empty()) {
      const std::size_t comma = names.find(',');
      std::string_view name = names.substr(0, comma);
      while (!name.empty() && name.front() == ' ') name.remove_prefix(1);
      while (!name.empty() && name.back() == ' ') name.remove_suffix(1);
      if (!name.empty()) out.emplace_back(name);
      names = comma == std::string_view::npos ? std::string_view{} : names.substr(comma + 1);
    }
    return out;
  }

  template <class T>
  static Convert integer_into(T& out, std::uint64_t lo, std::uint64_t hi) {
    return [&out, lo, hi](std::string_view v) {
      auto n = parse_u64(v, lo, hi);
      if (!n) return "an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
      out = static_cast<T>(*n);
      return std::string();
    };
  }

  static std::string number(double x) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", x);
    return buf;
  }

  const Option* find(std::string_view name) const {
    for (const Option& o : options_)
      for (const std::string& n : o.names)
        if (n == name) return &o;
    return nullptr;
  }

  bool is_help(std::string_view arg) const {
    return arg == "--help" || arg == "-?" || (arg == "-h" && find("-h") == nullptr);
  }

  void check(std::string_view what, std::string_view value, const std::string& expected) const {
    if (!expected.empty()) fail(std::string(what) + ": expected " + expected + ", got '" + std::string(value) + "'");
  }

  std::string program_, synopsis_;
  std::vector<Option> options_;
  std::vector<Positional> positionals_;
};

}  // namespace galay::cli
