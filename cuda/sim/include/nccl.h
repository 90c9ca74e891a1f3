#pragma once
// qtune's stand-in for NCCL in the sim flavor (cuda/sim/nccl.cpp): the collectives qtune's dist layer
// uses, across ranks that are host threads of one process or separate processes (one per rank under
// mpirun), each with its own simulated GPU (QTUNE_SIM_DEVICES). A collective is queued on its stream like a
// kernel and meets the other ranks' when the streams run (processes meet through files in /dev/shm). Reductions run in
// rank order 0..N-1 (real NCCL's ring or tree order and its rounding at each hop differ). Ranks that disagree on a
// collective, or one that never arrives within QTUNE_SIM_NCCL_TIMEOUT_S seconds (default 60), fault every rank instead
// of hanging.
#include <cstddef>

#include <cuda_runtime.h>

enum ncclResult_t : int {
  ncclSuccess = 0,
  ncclUnhandledCudaError = 1,
  ncclSystemError = 2,
  ncclInternalError = 3,
  ncclInvalidArgument = 4,
  ncclInvalidUsage = 5,
  ncclRemoteError = 6,
  ncclInProgress = 7,
};

enum ncclDataType_t : int {
  ncclInt8 = 0,
  ncclUint8 = 1,
  ncclInt32 = 2,
  ncclUint32 = 3,
  ncclInt64 = 4,
  ncclUint64 = 5,
  ncclFloat16 = 6,
  ncclFloat32 = 7,
  ncclFloat64 = 8,
  ncclBfloat16 = 9,
};

enum ncclRedOp_t : int { ncclSum = 0, ncclProd = 1, ncclMax = 2, ncclMin = 3, ncclAvg = 4 };

struct ncclComm;
using ncclComm_t = ncclComm*;

struct ncclUniqueId {
  char internal[128];
};

const char* ncclGetErrorString(ncclResult_t result);
// What the last failing call of this thread was about.
const char* ncclGetLastError(ncclComm_t comm);

ncclResult_t ncclGetUniqueId(ncclUniqueId* id);
// Blocks until all nranks ranks of id have joined; each rank uses the current device.
ncclResult_t ncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId id, int rank);
ncclResult_t ncclCommDestroy(ncclComm_t comm);
ncclResult_t ncclCommAbort(ncclComm_t comm);
ncclResult_t ncclCommCount(ncclComm_t comm, int* count);
ncclResult_t ncclCommUserRank(ncclComm_t comm, int* rank);
ncclResult_t ncclCommCuDevice(ncclComm_t comm, int* device);

ncclResult_t ncclAllGather(const void* send, void* recv, size_t send_count, ncclDataType_t type, ncclComm_t comm,
                           cudaStream_t stream);
ncclResult_t ncclReduceScatter(const void* send, void* recv, size_t recv_count, ncclDataType_t type, ncclRedOp_t op,
                               ncclComm_t comm, cudaStream_t stream);
ncclResult_t ncclAllReduce(const void* send, void* recv, size_t count, ncclDataType_t type, ncclRedOp_t op,
                           ncclComm_t comm, cudaStream_t stream);
ncclResult_t ncclBroadcast(const void* send, void* recv, size_t count, ncclDataType_t type, int root, ncclComm_t comm,
                           cudaStream_t stream);
// Collectives between these are queued in order, as without them (they group nothing the simulator
// would need fused); unbalanced calls are an error.
ncclResult_t ncclGroupStart();
ncclResult_t ncclGroupEnd();
