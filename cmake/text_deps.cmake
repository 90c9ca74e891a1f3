# Libraries behind file formats and tokenizers: nlohmann/json (header-only: configs, safetensors and
# tokenizer.json headers), SentencePiece (tokenizer.model, tokenizer training) and PCRE2 (byte-level BPE
# pre-tokenization). Found by plain paths rather than pkg-config imported targets so that the exported
# qtune target names files that any consumer can link without finding these packages itself.
find_package(nlohmann_json 3.10 REQUIRED)
target_link_libraries(qtune PRIVATE $<BUILD_INTERFACE:nlohmann_json::nlohmann_json>)

find_path(QTUNE_SENTENCEPIECE_INCLUDE_DIR sentencepiece_processor.h)
find_library(QTUNE_SENTENCEPIECE_LIBRARY sentencepiece)
find_library(QTUNE_SENTENCEPIECE_TRAIN_LIBRARY sentencepiece_train)
find_path(QTUNE_PCRE2_INCLUDE_DIR pcre2.h)
find_library(QTUNE_PCRE2_LIBRARY pcre2-8)
foreach(var QTUNE_SENTENCEPIECE_INCLUDE_DIR QTUNE_SENTENCEPIECE_LIBRARY QTUNE_SENTENCEPIECE_TRAIN_LIBRARY
            QTUNE_PCRE2_INCLUDE_DIR QTUNE_PCRE2_LIBRARY)
  if(NOT ${var})
    message(FATAL_ERROR "qtune needs SentencePiece and PCRE2 (${var} not found): "
                        "apt-get install libsentencepiece-dev libpcre2-dev")
  endif()
endforeach()
target_include_directories(qtune SYSTEM PRIVATE ${QTUNE_SENTENCEPIECE_INCLUDE_DIR} ${QTUNE_PCRE2_INCLUDE_DIR})
target_link_libraries(qtune PRIVATE ${QTUNE_SENTENCEPIECE_TRAIN_LIBRARY} ${QTUNE_SENTENCEPIECE_LIBRARY}
                                    ${QTUNE_PCRE2_LIBRARY})
