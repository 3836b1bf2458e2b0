// The GPU arithmetic and cuDNN search settings
// (caffe/patches/gpu-math-and-cudnn-search.patch): defaults, a solver's
// fields applied when given and only then, and their effect on what the
// cuDNN layers would choose. Host code only; runs in every build.
#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"

#include "caffe/common.hpp"
#include "caffe/proto/caffe.pb.h"
#include "caffe/solver.hpp"

#ifdef USE_CUDNN
#include "caffe/util/cudnn.hpp"
#endif

#include "caffe/test/test_caffe_main.hpp"

namespace caffe {

class GpuSettingsTest : public ::testing::Test {
 protected:
  // every test starts and ends with the defaults
  void SetUp() { Reset(); }
  void TearDown() { Reset(); }
  static void Reset() {
    Caffe::set_gpu_math(Caffe::FP32);
    Caffe::set_cudnn_search(Caffe::HEURISTIC);
    Caffe::set_cudnn_deterministic(false);
    Caffe::set_cudnn_workspace_limit(size_t(8) << 20);
  }
};

TEST_F(GpuSettingsTest, SolverDefaultsAreFp32HeuristicAnd8MiB) {
  SolverParameter param;
  EXPECT_EQ(SolverParameter_GpuMath_FP32, param.gpu_math());
  EXPECT_EQ(SolverParameter_CudnnSearch_HEURISTIC, param.cudnn_search());
  EXPECT_FALSE(param.cudnn_deterministic());
  EXPECT_EQ(8u, param.cudnn_workspace_limit_mb());
}

TEST_F(GpuSettingsTest, ApplyTakesWhatTheSolverGives) {
  SolverParameter param;
  CHECK(google::protobuf::TextFormat::ParseFromString(
      "gpu_math: TF32 cudnn_search: MEASURED cudnn_deterministic: true "
      "cudnn_workspace_limit_mb: 1024", &param));
  ApplyGpuSettings(param);
  EXPECT_EQ(Caffe::TF32, Caffe::gpu_math());
  EXPECT_EQ(Caffe::MEASURED, Caffe::cudnn_search());
  EXPECT_TRUE(Caffe::cudnn_deterministic());
  EXPECT_EQ(size_t(1024) << 20, Caffe::cudnn_workspace_limit());

  // fields that are not given leave the current values alone
  ApplyGpuSettings(SolverParameter());
  EXPECT_EQ(Caffe::TF32, Caffe::gpu_math());
  EXPECT_EQ(size_t(1024) << 20, Caffe::cudnn_workspace_limit());

  // given explicitly, the defaults are set back
  SolverParameter back;
  CHECK(google::protobuf::TextFormat::ParseFromString(
      "gpu_math: FP32 cudnn_search: HEURISTIC cudnn_deterministic: false "
      "cudnn_workspace_limit_mb: 0", &back));
  ApplyGpuSettings(back);
  EXPECT_EQ(Caffe::FP32, Caffe::gpu_math());
  EXPECT_EQ(Caffe::HEURISTIC, Caffe::cudnn_search());
  EXPECT_FALSE(Caffe::cudnn_deterministic());
  EXPECT_EQ(0u, Caffe::cudnn_workspace_limit());
}

#ifdef USE_CUDNN
TEST_F(GpuSettingsTest, ConvolutionSearchFollowsTheSettings) {
  cudnn::ConvSearch search = cudnn::CurrentConvSearch();
  EXPECT_FALSE(search.measure);
  EXPECT_FALSE(search.policy.allow_tensor_op);
  EXPECT_FALSE(search.policy.deterministic_only);
  EXPECT_EQ(size_t(8) << 20, search.workspace_limit);
  Caffe::set_gpu_math(Caffe::TF32);
  Caffe::set_cudnn_search(Caffe::MEASURED);
  Caffe::set_cudnn_deterministic(true);
  Caffe::set_cudnn_workspace_limit(size_t(3) << 20);
  search = cudnn::CurrentConvSearch();
  EXPECT_TRUE(search.measure);
  EXPECT_TRUE(search.policy.allow_tensor_op);
  EXPECT_TRUE(search.policy.deterministic_only);
  EXPECT_EQ(size_t(3) << 20, search.workspace_limit);
}
#endif

}  // namespace caffe
