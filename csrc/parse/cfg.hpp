// Darknet .cfg text -> sections of key=value options with file:line kept.
// The network builder reads options through CfgSection so every error and
// every unknown-key warning can name the exact place in the file.
#pragma once
#include <string>
#include <vector>

namespace dn {

struct CfgOption {
  std::string key;
  std::string value;
  int line = 0;
  mutable bool used = false;
};

struct CfgSection {
  std::string type;  // without brackets, e.g. "convolutional"
  std::string file;  // path the text came from ("<string>" for text)
  int line = 0;      // line of the [header]
  std::vector<CfgOption> options;

  const CfgOption* find(const std::string& key) const;
  bool has(const std::string& key) const { return find(key) != nullptr; }
  int get_int(const std::string& key, int def) const;
  int require_int(const std::string& key) const;
  float get_float(const std::string& key, float def) const;
  // The same, refused with a file:line error outside [lo, hi].
  int get_int(const std::string& key, int def, int lo, int hi) const;
  float get_float(const std::string& key, float def, float lo, float hi) const;
  std::string get_str(const std::string& key, const std::string& def) const;
  std::vector<int> get_ints(const std::string& key) const;      // comma list
  std::vector<float> get_floats(const std::string& key) const;  // comma list
  // Marks a key as read without reading it (keys Darknet accepts but ignores).
  void touch(const std::string& key) const;
  // "file:line: [type] key=value: msg", thrown as DarknetError.
  [[noreturn]] void fail_key(const std::string& key, const std::string& msg) const;
  [[noreturn]] void fail_section(const std::string& msg) const;
  std::string where() const;  // "file:line"
  // Options never read, as warnings "file:line: unknown key 'k' in [type]".
  std::vector<std::string> unused_warnings() const;
};

// Finds a data file named in a cfg (tree=, map=): as given (relative to the
// working directory, as Darknet), then relative to the cfg's directory and its
// parents. Throws a file:line DarknetError listing the places tried.
std::string resolve_data_path(const CfgSection& s, const std::string& key, const std::string& value);

// Byte offset of the first invalid UTF-8 sequence in s, or std::string::npos. Text files
// (cfg, tree) are checked with it: their contents become Python strings.
size_t invalid_utf8_at(const std::string& s);

std::vector<CfgSection> parse_cfg_text(const std::string& text, const std::string& file);
std::vector<CfgSection> parse_cfg_file(const std::string& path);
// Writes sections back as cfg text (comments are not kept).
std::string write_cfg_text(const std::vector<CfgSection>& sections);

}  // namespace dn
