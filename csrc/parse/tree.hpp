// WordTree (.tree) and class map (.map) files, as Darknet reads them.
//
// A .tree file has one node per line, `name parent_index` (parent -1 for a
// root; a missing index means -1). Consecutive lines with the same parent form
// one softmax group; a node's child group is the group its children form.
// A .map file holds one integer per line (e.g. COCO class -> 9k node).
#pragma once
#include <string>
#include <vector>

namespace dn {

struct WordTree {
  std::string file;                // path it was read from
  std::vector<std::string> name;   // per node
  std::vector<int> parent;         // per node, -1 for roots
  std::vector<int> child;          // per node: group index of its children, -1 for a leaf
  std::vector<int> group;          // per node: the group it belongs to
  std::vector<int> leaf;           // per node: 1 when no node names it as parent
  std::vector<int> group_size;     // per group
  std::vector<int> group_offset;   // per group: index of its first node

  int n() const { return (int)parent.size(); }
  int groups() const { return (int)group_size.size(); }
};

// Throws DarknetError naming file:line for an unreadable file, a bad parent
// index (not an earlier node) or a blank line inside the list.
WordTree parse_tree_text(const std::string& text, const std::string& file);
WordTree read_tree(const std::string& path);

std::vector<int> parse_map_text(const std::string& text, const std::string& file);
std::vector<int> read_map(const std::string& path);

}  // namespace dn
