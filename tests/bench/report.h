// smime-agent-bench's report: the cells compared path against path, the
// targets the agent is held to, the machine the run was on, as a table
// (docs/PERFORMANCE.md quotes it) or as JSON.
#ifndef SMIME_TESTS_BENCH_REPORT_H_
#define SMIME_TESTS_BENCH_REPORT_H_

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "tests/bench/measure.h"
#include "tests/bench/options.h"
#include "tokens/module.h"

namespace smime::bench {

struct Comparison {
  const CellResult* in_process;
  const CellResult* agent;
  double ratio() const {
    return in_process->ops_per_second > 0 ? agent->ops_per_second / in_process->ops_per_second : 0;
  }
  double added_p50_us() const { return agent->p50_us - in_process->p50_us; }
};

struct Target {
  std::string name;
  std::string description;
  std::optional<double> value;  // unset when the cell was not measured
  double threshold;
  bool at_least;  // true: value >= threshold; false: value <= threshold
  std::optional<bool> met() const {
    if (!value) return std::nullopt;
    return at_least ? *value >= threshold : *value <= threshold;
  }
};

struct Environment {
  std::string date;
  std::string command;
  std::string arch;
  std::string kernel;
  std::string cpu_model;
  int cpus = 0;
  // 1, 5 and 15 minute load averages when the run started: other work on
  // the machine skews the figures, and this shows whether there was any.
  std::string load_average;
  std::string softhsm;
};

// The machine, the token library and the command line of this run.
Environment DescribeEnvironment(int argc, char** argv, const tokens::Module& module);
// The targets, from the cells that were measured.
std::vector<Target> EvaluateTargets(const std::vector<Comparison>& comparisons);

void PrintTable(const Environment& env, const Options& options,
                const std::vector<Comparison>& comparisons, const std::vector<Target>& targets);
void PrintLarge(const std::vector<LargeResult>& large);
nlohmann::ordered_json ToJson(const Environment& env, const Options& options,
                              const std::vector<CellResult>& cells,
                              const std::vector<Comparison>& comparisons,
                              const std::vector<Target>& targets, const std::vector<LargeResult>& large);

}  // namespace smime::bench

#endif  // SMIME_TESTS_BENCH_REPORT_H_
