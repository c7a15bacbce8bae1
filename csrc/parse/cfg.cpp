#include "parse/cfg.hpp"

#include <cerrno>
#include <cmath>
#include <filesystem>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "core/error.hpp"

namespace dn {

namespace {

std::string trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && (unsigned char)s[b] <= ' ') ++b;
  while (e > b && (unsigned char)s[e - 1] <= ' ') --e;
  return s.substr(b, e - b);
}

// Darknet strips every whitespace character from a line before parsing.
std::string strip_all_space(const std::string& s) {
  std::string out;
  for (char ch : s)
    if ((unsigned char)ch > ' ') out.push_back(ch);
  return out;
}

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> parts;
  std::string cur;
  for (char ch : s) {
    if (ch == ',') {
      parts.push_back(trim(cur));
      cur.clear();
    } else {
      cur.push_back(ch);
    }
  }
  parts.push_back(trim(cur));
  // A trailing comma ("1,2,") is common in hand-written cfgs: ignore the empty tail.
  if (parts.size() > 1 && parts.back().empty()) parts.pop_back();
  return parts;
}

}  // namespace

// Byte offset of the first invalid UTF-8 sequence in s, or npos. The text becomes
// Python strings (keys in warnings, values in errors), so it must decode.
size_t invalid_utf8_at(const std::string& s) {
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    const unsigned char c = (unsigned char)s[i];
    size_t len = 0;
    uint32_t cp = 0;
    if (c < 0x80) { ++i; continue; }
    if ((c & 0xE0) == 0xC0) len = 2, cp = c & 0x1F;
    else if ((c & 0xF0) == 0xE0) len = 3, cp = c & 0x0F;
    else if ((c & 0xF8) == 0xF0) len = 4, cp = c & 0x07;
    else return i;
    if (i + len > n) return i;
    for (size_t k = 1; k < len; ++k) {
      const unsigned char cc = (unsigned char)s[i + k];
      if ((cc & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (cc & 0x3F);
    }
    // Overlong forms, UTF-16 surrogates and values past U+10FFFF are not UTF-8.
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
      return i;
    i += len;
  }
  return std::string::npos;
}

std::string CfgSection::where() const { return file + ":" + std::to_string(line); }

const CfgOption* CfgSection::find(const std::string& key) const {
  const CfgOption* found = nullptr;
  for (const auto& o : options)
    if (o.key == key) found = &o;  // the last assignment wins, as in Darknet
  if (found) {
    for (const auto& o : options)
      if (o.key == key) o.used = true;
  }
  return found;
}

void CfgSection::touch(const std::string& key) const { find(key); }

void CfgSection::fail_key(const std::string& key, const std::string& msg) const {
  const CfgOption* o = nullptr;
  for (const auto& opt : options)
    if (opt.key == key) o = &opt;
  if (o)
    fail(file, ":", o->line, ": [", type, "] ", key, "=", o->value, ": ", msg);
  fail(file, ":", line, ": [", type, "] ", key, ": ", msg);
}

void CfgSection::fail_section(const std::string& msg) const {
  fail(file, ":", line, ": [", type, "]: ", msg);
}

static long parse_long_strict(const CfgSection& s, const std::string& key, const std::string& text) {
  const char* begin = text.c_str();
  char* end = nullptr;
  errno = 0;
  long v = std::strtol(begin, &end, 10);
  // Darknet uses atoi, which accepts "3.0" as 3; accept a numeric tail only if it is zeros.
  if (end == begin) s.fail_key(key, "expected an integer");
  if (*end == '.') {
    char* fend = nullptr;
    double d = std::strtod(begin, &fend);
    // Range first: casting an out-of-range double to an integer is undefined.
    if (*fend != '\0' || !(d >= -2147483647.0 && d <= 2147483647.0) || d != (double)(long)d)
      s.fail_key(key, "expected an integer");
    return (long)d;
  }
  if (*end != '\0' || errno == ERANGE || v > 2147483647L || v < -2147483647L)
    s.fail_key(key, "expected an integer");
  return v;
}

static float parse_float_strict(const CfgSection& s, const std::string& key, const std::string& text) {
  const char* begin = text.c_str();
  char* end = nullptr;
  float v = std::strtof(begin, &end);
  if (end == begin || *end != '\0') s.fail_key(key, "expected a number");
  // No cfg value means anything as NaN or infinity (strtof accepts "nan", "inf" and 1e39).
  if (!std::isfinite(v)) s.fail_key(key, "expected a finite number");
  return v;
}

int CfgSection::get_int(const std::string& key, int def) const {
  const CfgOption* o = find(key);
  if (!o) return def;
  return (int)parse_long_strict(*this, key, o->value);
}

int CfgSection::get_int(const std::string& key, int def, int lo, int hi) const {
  const int v = get_int(key, def);
  if (v < lo || v > hi)
    fail_key(key, "must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " + std::to_string(v));
  return v;
}

float CfgSection::get_float(const std::string& key, float def, float lo, float hi) const {
  const float v = get_float(key, def);
  if (!(v >= lo && v <= hi)) {
    std::ostringstream os;
    os << "must be in [" << lo << ", " << hi << "], got " << v;
    fail_key(key, os.str());
  }
  return v;
}

int CfgSection::require_int(const std::string& key) const {
  const CfgOption* o = find(key);
  if (!o) fail_section("missing required key '" + key + "'");
  return (int)parse_long_strict(*this, key, o->value);
}

float CfgSection::get_float(const std::string& key, float def) const {
  const CfgOption* o = find(key);
  if (!o) return def;
  return parse_float_strict(*this, key, o->value);
}

std::string CfgSection::get_str(const std::string& key, const std::string& def) const {
  const CfgOption* o = find(key);
  return o ? o->value : def;
}

std::vector<int> CfgSection::get_ints(const std::string& key) const {
  std::vector<int> out;
  const CfgOption* o = find(key);
  if (!o || o->value.empty()) return out;
  for (const auto& part : split_commas(o->value)) out.push_back((int)parse_long_strict(*this, key, part));
  return out;
}

std::vector<float> CfgSection::get_floats(const std::string& key) const {
  std::vector<float> out;
  const CfgOption* o = find(key);
  if (!o || o->value.empty()) return out;
  for (const auto& part : split_commas(o->value)) out.push_back(parse_float_strict(*this, key, part));
  return out;
}

std::vector<std::string> CfgSection::unused_warnings() const {
  std::vector<std::string> w;
  for (const auto& o : options)
    if (!o.used)
      w.push_back(file + ":" + std::to_string(o.line) + ": unknown key '" + o.key + "' in [" + type + "] (ignored)");
  return w;
}

std::vector<CfgSection> parse_cfg_text(const std::string& text, const std::string& file) {
  std::vector<CfgSection> sections;
  std::istringstream in(text);
  std::string raw;
  int lineno = 0;
  while (std::getline(in, raw)) {
    ++lineno;
    const size_t bad = invalid_utf8_at(raw);
    if (bad != std::string::npos) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "0x%02X", (unsigned)(unsigned char)raw[bad]);
      fail(file, ":", lineno, ": not UTF-8 text (byte ", hex, " at column ", bad + 1,
           "); a Darknet cfg is plain text");
    }
    if (raw.find('\0') != std::string::npos) fail(file, ":", lineno, ": NUL byte in the text; a Darknet cfg is plain text");
    std::string line = strip_all_space(raw);
    if (line.empty() || line[0] == '#' || line[0] == ';') continue;
    if (line[0] == '[') {
      if (line.back() != ']')
        fail(file, ":", lineno, ": malformed section header '", trim(raw), "' (missing ']')");
      CfgSection s;
      s.type = line.substr(1, line.size() - 2);
      if (s.type.empty()) fail(file, ":", lineno, ": empty section name '[]'");
      s.file = file;
      s.line = lineno;
      sections.push_back(std::move(s));
      continue;
    }
    size_t eq = line.find('=');
    if (eq == std::string::npos || eq == 0)
      fail(file, ":", lineno, ": expected key=value, got '", trim(raw), "'");
    if (sections.empty())
      fail(file, ":", lineno, ": option '", line.substr(0, eq), "' before any [section]");
    CfgOption o;
    o.key = line.substr(0, eq);
    o.value = line.substr(eq + 1);
    // Allow trailing comments after a value: "size=3 # kernel".
    size_t hash = o.value.find_first_of("#;");
    if (hash != std::string::npos) o.value = o.value.substr(0, hash);
    o.line = lineno;
    sections.back().options.push_back(std::move(o));
  }
  if (sections.empty()) fail(file, ": no sections found (is this a Darknet .cfg file?)");
  return sections;
}

std::vector<CfgSection> parse_cfg_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail(path, ": cannot open cfg file");
  std::ostringstream ss;
  ss << f.rdbuf();
  return parse_cfg_text(ss.str(), path);
}

std::string write_cfg_text(const std::vector<CfgSection>& sections) {
  std::ostringstream os;
  for (size_t i = 0; i < sections.size(); ++i) {
    if (i) os << "\n";
    os << "[" << sections[i].type << "]\n";
    for (const auto& o : sections[i].options) os << o.key << "=" << o.value << "\n";
  }
  return os.str();
}

// tree=/map= paths: as given (relative to the working directory, as Darknet),
// then relative to the cfg file's directory and each of its parents, so a cfg
// that names "data/9k.tree" works from the project root as well.
std::string resolve_data_path(const CfgSection& s, const std::string& key, const std::string& value) {
  namespace fs = std::filesystem;
  std::vector<std::string> tried;
  std::error_code ec;
  auto exists = [&](const fs::path& p) {
    tried.push_back(p.string());
    return fs::is_regular_file(p, ec);
  };
  fs::path given(value);
  if (exists(given)) return given.string();
  if (given.is_relative() && !s.file.empty() && s.file[0] != '<') {
    fs::path dir = fs::absolute(fs::path(s.file), ec).parent_path();
    while (!dir.empty()) {
      if (exists(dir / given)) return (dir / given).string();
      fs::path up = dir.parent_path();
      if (up == dir) break;
      dir = up;
    }
  }
  std::string list;
  for (size_t i = 0; i < tried.size() && i < 4; ++i) list += (i ? ", " : "") + tried[i];
  if (tried.size() > 4) list += ", ...";
  s.fail_key(key, "file '" + value + "' not found (tried " + list + ")");
}

}  // namespace dn
