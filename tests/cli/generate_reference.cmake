# `qtune generate` with --temperature 0 must print exactly what transformers' greedy generate produced
# for each prompt of tests/golden/tiny_llama_sp/reference_generation.json (prompt + continuation), and
# the same seed must give the same sampled text twice.
# cmake -DQTUNE=path/to/qtune -DMODEL=tests/golden/tiny_llama_sp -P generate_reference.cmake
file(READ ${MODEL}/reference_generation.json reference)
string(JSON max_new GET "${reference}" max_new_tokens)
string(JSON n LENGTH "${reference}" cases)
math(EXPR last "${n} - 1")
foreach(i RANGE ${last})
  string(JSON prompt GET "${reference}" cases ${i} prompt)
  string(JSON expected GET "${reference}" cases ${i} text)
  execute_process(COMMAND ${QTUNE} generate --model ${MODEL} --prompt "${prompt}" --temperature 0
                          --max-new-tokens ${max_new}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "qtune generate failed for prompt '${prompt}' (exit ${rc}):\n${err}")
  endif()
  message("prompt '${prompt}':\n${out}${err}")
  if(NOT out STREQUAL "${expected}\n")
    message(FATAL_ERROR "prompt '${prompt}': expected\n'${expected}'\ngot\n'${out}'")
  endif()
endforeach()

foreach(run a b c)
  set(seed 7)
  if(run STREQUAL "c")
    set(seed 8)
  endif()
  execute_process(COMMAND ${QTUNE} generate --model ${MODEL} --prompt "The" --max-new-tokens 20 --seed ${seed}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out_${run} ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "sampling failed (exit ${rc}):\n${err}")
  endif()
endforeach()
message("seed 7: ${out_a}seed 8: ${out_c}")
if(NOT out_a STREQUAL out_b)
  message(FATAL_ERROR "the same seed sampled different text:\n${out_a}\n${out_b}")
endif()
if(out_a STREQUAL out_c)
  message(FATAL_ERROR "seeds 7 and 8 sampled the same text (the seed is not used?)")
endif()
