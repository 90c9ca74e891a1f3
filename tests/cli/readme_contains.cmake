# Fails unless README (-DREADME) contains the whole of FILE (-DFILE) verbatim: the README shows an example
# program in full, and this keeps the two from drifting apart.
file(READ "${README}" readme)
file(READ "${FILE}" program)
string(FIND "${readme}" "${program}" at)
if(at EQUAL -1)
  message(FATAL_ERROR "${README} no longer shows ${FILE} verbatim; paste the current file into it")
endif()
