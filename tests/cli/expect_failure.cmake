# Runs COMMAND (a ;-list) and passes only if it exits non-zero AND its output matches EXPECT: a
# failing command alone could be failing for the wrong reason.
# cmake -DCOMMAND=... -DEXPECT=regex -P expect_failure.cmake
execute_process(COMMAND ${COMMAND} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
message("exit status: ${rc}\nstdout:\n${out}\nstderr:\n${err}")
if(rc EQUAL 0)
  message(FATAL_ERROR "expected a non-zero exit status")
endif()
if(NOT "${out}${err}" MATCHES "${EXPECT}")
  message(FATAL_ERROR "expected the output to match '${EXPECT}'")
endif()
