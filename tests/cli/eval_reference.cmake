# `qtune eval --json` must print the metrics tools/goldens/gen_eval.py computed with transformers for
# tests/golden/eval: perplexity with 16-token windows and with the model's own length (the default),
# and hellaswag accuracies. Counts must match exactly, real numbers within a relative 1e-4.
# cmake -DQTUNE=path/to/qtune -DMODEL=tests/golden/tiny_llama_sp -DDATA=tests/golden/eval -P eval_reference.cmake
file(READ ${DATA}/expected.json expected)

function(run_eval out_var)
  execute_process(COMMAND ${QTUNE} eval --model ${MODEL} --json ${ARGN}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  message("qtune eval ${ARGN}:\n${out}${err}")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "qtune eval ${ARGN} failed (exit ${rc})")
  endif()
  set(${out_var} "${out}" PARENT_SCOPE)
endfunction()

# CMake has no floating-point arithmetic; awk decides |actual - expected| <= 1e-4 |expected|.
function(check_close json key expected_value)
  string(JSON actual GET "${json}" ${key})
  execute_process(COMMAND awk "BEGIN { a = ${actual}; e = ${expected_value}; d = a - e; if (d < 0) d = -d;
                                       m = e < 0 ? -e : e; exit !(d <= 1e-4 * m) }"
                  RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${key}: expected ${expected_value}, got ${actual}")
  endif()
endfunction()

function(check_equal json key expected_value)
  string(JSON actual GET "${json}" ${key})
  if(NOT actual EQUAL expected_value)
    message(FATAL_ERROR "${key}: expected ${expected_value}, got ${actual}")
  endif()
endfunction()

foreach(length 16 256)
  if(length EQUAL 256)
    run_eval(out --data ${DATA}/docs.jsonl)
  else()
    run_eval(out --data ${DATA}/docs.jsonl --seq-len ${length} --batch-size 3)
  endif()
  foreach(key documents tokens words bytes)
    string(JSON value GET "${expected}" perplexity ${length} corpus ${key})
    check_equal("${out}" ${key} ${value})
  endforeach()
  foreach(key log_likelihood token_loss token_perplexity word_perplexity byte_perplexity bits_per_byte)
    string(JSON value GET "${expected}" perplexity ${length} corpus ${key})
    check_close("${out}" ${key} ${value})
  endforeach()
  foreach(key seconds tokens_per_second)
    string(JSON value ERROR_VARIABLE missing GET "${out}" ${key})
    if(missing)
      message(FATAL_ERROR "no ${key} in the output")
    endif()
  endforeach()
endforeach()

run_eval(out --data ${DATA}/hellaswag.jsonl --task hellaswag)
string(JSON count GET "${expected}" hellaswag count)
check_equal("${out}" examples ${count})
foreach(key acc acc_norm)
  string(JSON value GET "${expected}" hellaswag ${key})
  check_close("${out}" ${key} ${value})
endforeach()
