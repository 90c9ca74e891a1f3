// engine/io/json_reader.h: the strict JSON reading every config and header parser shares. Each rule's
// message names the dotted key and the file.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <string>

#include "engine/check.h"
#include "engine/io/json_reader.h"
#include "tests/scratch_files.h"

using namespace qtune;
using io::Json;
using io::JsonFields;
using testing::error_of;

namespace {

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("typed fields, fallbacks, and null as absent") {
  const Json j = io::parse_json(
      R"({"n": 3, "x": 0.5, "b": true, "s": "hi", "z": null, "o": {"k": 7}, "l": [1, 2], "big": 18446744073709551615})",
      "f.json");
  const JsonFields f(j, "f.json");
  CHECK(f.integer("n") == 3);
  CHECK(f.number("x") == 0.5);
  CHECK(f.number("n") == 3.0);  // an integer is a number
  CHECK(f.boolean("b"));
  CHECK(f.string("s") == "hi");
  CHECK(f.integer("missing", 9) == 9);
  CHECK(f.integer("z", 9) == 9);  // null takes the fallback
  CHECK(f.present("z"));
  CHECK_FALSE(f.has("z"));
  CHECK(f.object("o").integer("k") == 7);
  CHECK(f.array("l").size() == 2);
  CHECK(f.item_name("l", 1) == "l[1]");
  CHECK(f.name("n") == "n");
  CHECK(f.object("o").name("k") == "o.k");
}

TEST_CASE("every complaint names the dotted key and the file") {
  const Json j = io::parse_json(R"({"n": "3", "x": "y", "b": 1, "s": 4, "z": null, "o": {"k": false}, "l": 5,
                                    "big": 18446744073709551615})",
                                "f.json");
  const JsonFields f(j, "f.json");
  CHECK(has(error_of([&] { f.integer("n"); }), "n in f.json must be an integer, got string \"3\""));
  CHECK(has(error_of([&] { f.integer("big"); }), "big in f.json must be an integer"));
  CHECK(has(error_of([&] { f.number("x"); }), "x in f.json must be a number, got string \"y\""));
  CHECK(has(error_of([&] { f.boolean("b"); }), "b in f.json must be true or false (a boolean), got number 1"));
  CHECK(has(error_of([&] { f.string("s"); }), "s in f.json must be a string, got number 4"));
  CHECK(has(error_of([&] { f.integer("absent"); }), "absent in f.json is missing"));
  CHECK(has(error_of([&] { f.string("z"); }), "z in f.json is missing"));
  CHECK(has(error_of([&] { f.object("o").integer("k"); }), "o.k in f.json must be an integer, got boolean false"));
  CHECK(has(error_of([&] { f.object("n"); }), "n in f.json must be an object"));
  CHECK(has(error_of([&] { f.array("l"); }), "l in f.json must be a list, got number 5"));
  CHECK(has(error_of([&] { f.expect(false, "n", "must be odd"); }), "n in f.json must be odd"));
  CHECK(has(error_of([&] { JsonFields(j.at("l"), "f.json"); }), "the top level of f.json must be a JSON object"));
  CHECK(has(error_of([&] { JsonFields(j.at("n"), "f.json", "a.b."); }), "a.b in f.json must be a JSON object"));
  // A long value is cut in the message.
  const Json long_value = std::string(500, 'v');
  CHECK(error_of([&] { io::json_integer(long_value, "k", "f.json"); }).size() < 400);
}

TEST_CASE("parse and file errors name the source") {
  CHECK(has(error_of([] { io::parse_json("{\"a\": 1,}", "cfg.json"); }), "cfg.json: not valid JSON"));
  CHECK(has(error_of([] { io::read_json_file("/nonexistent/qtune/cfg.json"); }),
            "/nonexistent/qtune/cfg.json not found"));
  testing::ScratchDir dir("json_reader");
  const std::string path = dir.str("bad.json");
  std::ofstream(path) << "[1, 2";
  CHECK(has(error_of([&] { io::read_json_file(path); }), path + ": not valid JSON"));
  std::ofstream(path) << R"({"ok": true})";
  CHECK(io::read_json_file(path).at("ok") == true);
}
