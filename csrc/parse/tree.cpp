#include "parse/tree.hpp"

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "core/error.hpp"
#include "parse/cfg.hpp"

namespace dn {

namespace {

std::string read_whole_file(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, ": cannot open ", what, " file");
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::string cur;
  for (char ch : text) {
    if (ch == '\n') {
      lines.push_back(cur);
      cur.clear();
    } else if (ch != '\r') {
      cur.push_back(ch);
    }
  }
  if (!cur.empty()) lines.push_back(cur);
  return lines;
}

bool is_blank(const std::string& s) {
  for (char ch : s)
    if ((unsigned char)ch > ' ') return false;
  return true;
}

// Lines after the last non-blank one are ignored; a blank line before it is an error
// (Darknet would silently create a nameless node and shift every index after it).
size_t content_line_count(const std::vector<std::string>& lines) {
  size_t end = lines.size();
  while (end > 0 && is_blank(lines[end - 1])) --end;
  return end;
}

bool parse_int(const std::string& token, long* out) {
  const char* begin = token.c_str();
  char* end = nullptr;
  errno = 0;
  long v = std::strtol(begin, &end, 10);
  if (end == begin || *end != '\0' || errno == ERANGE || v > 2147483647L || v < -2147483648L) return false;
  *out = v;
  return true;
}

}  // namespace

WordTree parse_tree_text(const std::string& text, const std::string& file) {
  WordTree t;
  t.file = file;
  const std::vector<std::string> lines = split_lines(text);
  const size_t count = content_line_count(lines);
  if (count == 0) fail(file, ": tree file has no nodes");

  // Groups are maximal runs of consecutive nodes with the same parent; the
  // "previous parent" starts at -1 as in Darknet.
  int last_parent = -1;
  int run_start = 0;
  for (size_t i = 0; i < count; ++i) {
    const int line_no = (int)i + 1;
    if (invalid_utf8_at(lines[i]) != std::string::npos)
      fail(file, ":", line_no, ": not UTF-8 text (node names become Python strings)");
    std::istringstream ls(lines[i]);
    std::string name, parent_token, extra;
    if (!(ls >> name)) fail(file, ":", line_no, ": blank line inside the tree (expected 'name parent_index')");
    long parent = -1;
    if (ls >> parent_token) {
      if (!parse_int(parent_token, &parent))
        fail(file, ":", line_no, ": parent index '", parent_token, "' of '", name, "' is not an integer");
    }
    if (ls >> extra) fail(file, ":", line_no, ": unexpected text '", extra, "' after 'name parent_index'");
    const int node = (int)i;
    // Parents must precede their children: the hierarchical product walks up, and
    // hierarchy_predictions multiplies in index order.
    if (parent < -1 || parent >= node) {
      if (node == 0)
        fail(file, ":", line_no, ": parent index ", parent, " of '", name, "' must be -1 (the first node is a root)");
      fail(file, ":", line_no, ": parent index ", parent, " of '", name, "' must be -1 or an earlier node (0..",
           node - 1, ")");
    }
    if ((int)parent != last_parent) {
      t.group_offset.push_back(run_start);
      t.group_size.push_back(node - run_start);
      run_start = node;
      last_parent = (int)parent;
    }
    t.name.push_back(name);
    t.parent.push_back((int)parent);
    t.child.push_back(-1);
    t.group.push_back((int)t.group_size.size());
    if (parent >= 0) t.child[parent] = (int)t.group_size.size();
  }
  t.group_offset.push_back(run_start);
  t.group_size.push_back((int)count - run_start);

  t.leaf.assign(count, 1);
  for (size_t i = 0; i < count; ++i)
    if (t.parent[i] >= 0) t.leaf[t.parent[i]] = 0;
  return t;
}

WordTree read_tree(const std::string& path) { return parse_tree_text(read_whole_file(path, "tree"), path); }

std::vector<int> parse_map_text(const std::string& text, const std::string& file) {
  const std::vector<std::string> lines = split_lines(text);
  const size_t count = content_line_count(lines);
  std::vector<int> map;
  map.reserve(count);
  for (size_t i = 0; i < count; ++i) {
    std::istringstream ls(lines[i]);
    std::string token, extra;
    long v = 0;
    if (!(ls >> token)) fail(file, ":", i + 1, ": blank line inside the map (expected one integer per line)");
    if (!parse_int(token, &v) || (ls >> extra))
      fail(file, ":", i + 1, ": expected one integer, found '", lines[i], "'");
    map.push_back((int)v);
  }
  if (map.empty()) fail(file, ": map file is empty");
  return map;
}

std::vector<int> read_map(const std::string& path) { return parse_map_text(read_whole_file(path, "map"), path); }

}  // namespace dn
