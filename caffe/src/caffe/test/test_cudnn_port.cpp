// The host-side parts of the cuDNN 9 port (caffe/patches/cudnn9-*.patch):
// version arithmetic, the algorithm-picking rule and the shape-keyed cache
// run in every build; with USE_CUDNN also the version macros against the
// real cuDNN headers and library, the status messages and the layer
// factory's engine choice. None of it needs a GPU.
#include <string>
#include <vector>

#include "gtest/gtest.h"

#include "caffe/common.hpp"
#include "caffe/util/cudnn_algo_choice.hpp"
#include "caffe/util/cudnn_version.hpp"

#ifdef USE_CUDNN
#include "caffe/layer_factory.hpp"
#include "caffe/layers/cudnn_conv_layer.hpp"
#include "caffe/layers/cudnn_relu_layer.hpp"
#include "caffe/util/cudnn.hpp"
#endif

#include "caffe/test/test_caffe_main.hpp"

namespace caffe {
namespace cudnn {

// --- version arithmetic ------------------------------------------------------

// usable in #if, as CUDNN_VERSION_MIN is
#if !CAFFE_VERSION_AT_LEAST(9, 1, 0, 8, 9, 7) || \
    CAFFE_VERSION_AT_LEAST(9, 1, 0, 10, 0, 0)
#error "CAFFE_VERSION_AT_LEAST is wrong in #if"
#endif

TEST(CuDNNVersionTest, ComparesPartByPart) {
  EXPECT_TRUE(CAFFE_VERSION_AT_LEAST(9, 1, 0, 9, 1, 0));
  EXPECT_TRUE(CAFFE_VERSION_AT_LEAST(9, 1, 1, 9, 1, 0));
  EXPECT_FALSE(CAFFE_VERSION_AT_LEAST(9, 1, 0, 9, 1, 1));
  EXPECT_TRUE(CAFFE_VERSION_AT_LEAST(9, 19, 0, 9, 2, 5));
  EXPECT_FALSE(CAFFE_VERSION_AT_LEAST(9, 2, 5, 9, 19, 0));
  // minor versions past 9 do not carry into the major version
  EXPECT_FALSE(CAFFE_VERSION_AT_LEAST(9, 10, 0, 10, 0, 0));
  EXPECT_FALSE(CAFFE_VERSION_AT_LEAST(9, 19, 0, 10, 5, 0));
  EXPECT_TRUE(CAFFE_VERSION_AT_LEAST(9, 0, 0, 8, 9, 7));
  EXPECT_FALSE(CAFFE_VERSION_AT_LEAST(8, 9, 7, 9, 0, 0));
  // cuDNN 9.1.0 is not 10.0.0 or newer; upstream's
  // CUDNN_VERSION >= MAJOR * 1000 + ... said it was (90100 >= 10000).
  EXPECT_FALSE(CAFFE_VERSION_AT_LEAST(9, 1, 0, 10, 0, 0));
}

TEST(CuDNNVersionTest, DecodesBothPackings) {
  struct Case { unsigned long packed; int major, minor, patch; };  // NOLINT
  const Case cases[] = {
    {7605, 7, 6, 5}, {8000, 8, 0, 0}, {8907, 8, 9, 7},     // MAJOR * 1000 + ...
    {90000, 9, 0, 0}, {90100, 9, 1, 0}, {91900, 9, 19, 0},  // MAJOR * 10000 + ...
    {91203, 9, 12, 3}, {100203, 10, 2, 3},
  };
  for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); ++k) {
    const Version v = DecodeVersion(cases[k].packed);
    EXPECT_EQ(cases[k].major, v.major) << cases[k].packed;
    EXPECT_EQ(cases[k].minor, v.minor) << cases[k].packed;
    EXPECT_EQ(cases[k].patch, v.patch) << cases[k].packed;
  }
  EXPECT_TRUE(VersionAtLeast(DecodeVersion(91900), 9, 2, 0));
  EXPECT_FALSE(VersionAtLeast(DecodeVersion(8907), 9, 0, 0));
}

// --- the algorithm-picking rule ------------------------------------------------

// workspace_of for the tests: bytes by algorithm, a negative size = refused;
// records which algorithms it was asked about (PickAlgorithm takes a copy)
struct FakeWorkspace {
  FakeWorkspace() : asked(new std::vector<int>()) {}
  std::vector<long> bytes;  // NOLINT(runtime/int)
  shared_ptr<std::vector<int> > asked;
  bool operator()(int algo, size_t* out) const {
    asked->push_back(algo);
    if (bytes[algo] < 0) { return false; }
    *out = static_cast<size_t>(bytes[algo]);
    return true;
  }
};

static AlgoCandidate Cand(int algo, bool supported = true,
                          bool tensor_op = false) {
  AlgoCandidate c;
  c.algo = algo;
  c.supported = supported;
  c.tensor_op = tensor_op;
  return c;
}

TEST(CuDNNAlgoChoiceTest, TakesTheBestRankedThatFits) {
  FakeWorkspace ws;
  ws.bytes = {0, 100, 50, 10};  // by algorithm number
  std::vector<AlgoCandidate> ranked = {Cand(1), Cand(2), Cand(0), Cand(3)};
  size_t bytes = 7;
  bool over = true;
  EXPECT_EQ(1, PickAlgorithm(ranked, 60, -1, ws, &bytes, &over));  // algo 2
  EXPECT_EQ(50u, bytes);
  EXPECT_FALSE(over);
  EXPECT_EQ((std::vector<int>{1, 2}), *ws.asked);  // stops at the first fit
  EXPECT_EQ(0, PickAlgorithm(ranked, 100, -1, ws, &bytes, &over));
  EXPECT_EQ(100u, bytes);
  EXPECT_EQ(2, PickAlgorithm(ranked, 0, -1, ws, &bytes, &over));  // algo 0
  EXPECT_EQ(0u, bytes);
  EXPECT_FALSE(over);
}

TEST(CuDNNAlgoChoiceTest, SkipsUnsupportedTensorOpExcludedAndRefused) {
  FakeWorkspace ws;
  ws.bytes = {0, 0, 0, -1, 0};
  std::vector<AlgoCandidate> ranked = {
    Cand(0, false), Cand(1, true, true), Cand(2), Cand(3), Cand(4)};
  size_t bytes;
  bool over;
  EXPECT_EQ(2, PickAlgorithm(ranked, 0, -1, ws, &bytes, &over));
  EXPECT_EQ(4, PickAlgorithm(ranked, 0, 2, ws, &bytes, &over));  // 3 refused
  EXPECT_FALSE(over);
  // unsupported or tensor-op candidates are never asked for a workspace size
  EXPECT_EQ((std::vector<int>{2, 3, 4}), *ws.asked);
}

TEST(CuDNNAlgoChoiceTest, OverTheLimitTakesTheSmallest) {
  FakeWorkspace ws;
  ws.bytes = {300, 200, 900};
  std::vector<AlgoCandidate> ranked = {Cand(2), Cand(0), Cand(1)};
  size_t bytes;
  bool over = false;
  EXPECT_EQ(2, PickAlgorithm(ranked, 100, -1, ws, &bytes, &over));  // algo 1
  EXPECT_TRUE(over);
  EXPECT_EQ(200u, bytes);
}

TEST(CuDNNAlgoChoiceTest, NothingUsable) {
  FakeWorkspace ws;
  ws.bytes = {-1, 0};
  std::vector<AlgoCandidate> ranked = {Cand(0), Cand(1, false)};
  size_t bytes = 5;
  bool over = true;
  EXPECT_EQ(-1, PickAlgorithm(ranked, 1000, -1, ws, &bytes, &over));
  EXPECT_FALSE(over);
  EXPECT_EQ(0u, bytes);
  EXPECT_EQ(-1, PickAlgorithm(std::vector<AlgoCandidate>(), 1000, -1, ws,
                              &bytes, &over));
}

// --- what a run allows (caffe/patches/gpu-math-and-cudnn-search.patch) ----------

TEST(CuDNNAlgoChoiceTest, PolicyAllowsTf32AndRequiresDeterminism) {
  AlgoCandidate fma = Cand(0), tf32 = Cand(1, true, true), half = Cand(2);
  half.tensor_op = true;
  half.converts_down = true;
  AlgoCandidate atomics = Cand(3);
  atomics.deterministic = false;
  AlgoPolicy fp32, tf32_allowed, deterministic;
  tf32_allowed.allow_tensor_op = true;
  deterministic.deterministic_only = true;
  EXPECT_TRUE(Acceptable(fma, fp32));
  EXPECT_FALSE(Acceptable(tf32, fp32));         // FP32 is the default
  EXPECT_TRUE(Acceptable(tf32, tf32_allowed));
  EXPECT_FALSE(Acceptable(half, tf32_allowed));  // never down to half
  EXPECT_TRUE(Acceptable(atomics, fp32));
  EXPECT_FALSE(Acceptable(atomics, deterministic));
  EXPECT_FALSE(Acceptable(Cand(4, false), tf32_allowed));  // unsupported

  // ranked: tf32 first, then the nondeterministic one, then plain FMA
  FakeWorkspace ws;
  ws.bytes = {0, 0, 0, 0};
  std::vector<AlgoCandidate> ranked = {tf32, atomics, fma};
  size_t bytes;
  bool over;
  EXPECT_EQ(1, PickAlgorithm(ranked, 0, -1, ws, &bytes, &over));  // default
  EXPECT_EQ(0, PickAlgorithm(ranked, 0, -1, ws, &bytes, &over,
                             tf32_allowed));
  EXPECT_EQ(2, PickAlgorithm(ranked, 0, -1, ws, &bytes, &over,
                             deterministic));
}

TEST(CuDNNAlgoChoiceTest, CacheKeySeparatesEverySetting) {
  const std::vector<int> shape = {256, 3, 227, 227};
  ConvSearch base;
  EXPECT_EQ(8u << 20, base.workspace_limit);  // upstream's 8 MiB
  EXPECT_FALSE(base.measure);
  std::vector<ConvSearch> variants(6, base);
  variants[1].measure = true;
  variants[2].policy.allow_tensor_op = true;
  variants[3].policy.deterministic_only = true;
  variants[4].workspace_limit = size_t(1) << 30;
  variants[5] = base.WithoutWorkspace();
  EXPECT_EQ(0u, variants[5].workspace_limit);
  for (int i = 0; i < variants.size(); ++i) {
    for (int j = 0; j < i; ++j) {
      EXPECT_NE(AlgoCacheKey(shape, variants[i]),
                AlgoCacheKey(shape, variants[j])) << i << " vs " << j;
    }
  }
  EXPECT_EQ(AlgoCacheKey(shape, base), AlgoCacheKey(shape, ConvSearch()));
  EXPECT_NE(AlgoCacheKey(shape, base),
            AlgoCacheKey(std::vector<int>{128, 3, 227, 227}, base));
  // limits that differ only below a KiB still differ
  ConvSearch odd(base);
  odd.workspace_limit += 1;
  EXPECT_NE(AlgoCacheKey(shape, base), AlgoCacheKey(shape, odd));
}

// --- the shape-keyed cache -----------------------------------------------------

TEST(CuDNNAlgoCacheTest, FindsWhatWasPut) {
  ShapeKeyedCache<int> cache(4);
  const std::vector<int> a = {64, 1, 28, 28}, b = {100, 1, 28, 28};
  EXPECT_TRUE(cache.Find(a) == NULL);
  cache.Put(a, 1);
  cache.Put(b, 2);
  ASSERT_TRUE(cache.Find(a) != NULL);
  EXPECT_EQ(1, *cache.Find(a));
  EXPECT_EQ(2, *cache.Find(b));
  EXPECT_TRUE(cache.Find(std::vector<int>{64, 1, 28}) == NULL);
  cache.Put(a, 3);  // replaces, does not add
  EXPECT_EQ(3, *cache.Find(a));
  EXPECT_EQ(2u, cache.size());
  cache.Clear();
  EXPECT_EQ(0u, cache.size());
  EXPECT_TRUE(cache.Find(a) == NULL);
}

TEST(CuDNNAlgoCacheTest, DropsTheOldestWhenFull) {
  ShapeKeyedCache<int> cache(3);
  for (int n = 1; n <= 5; ++n) {
    cache.Put(std::vector<int>{n, 3, 8, 8}, n);
    EXPECT_LE(cache.size(), 3u);
  }
  EXPECT_TRUE(cache.Find(std::vector<int>{1, 3, 8, 8}) == NULL);
  EXPECT_TRUE(cache.Find(std::vector<int>{2, 3, 8, 8}) == NULL);
  for (int n = 3; n <= 5; ++n) {
    ASSERT_TRUE(cache.Find(std::vector<int>{n, 3, 8, 8}) != NULL) << n;
    EXPECT_EQ(n, *cache.Find(std::vector<int>{n, 3, 8, 8}));
  }
  ShapeKeyedCache<int> none(0);
  none.Put(std::vector<int>{1}, 1);
  EXPECT_EQ(0u, none.size());
}

#ifdef USE_CUDNN
// --- against the cuDNN headers and library (no GPU needed) -----------------------

TEST(CuDNNVersionTest, MacroMatchesTheHeaders) {
  EXPECT_TRUE(CUDNN_VERSION_MIN(CUDNN_MAJOR, CUDNN_MINOR, CUDNN_PATCHLEVEL));
  EXPECT_FALSE(CUDNN_VERSION_MIN(CUDNN_MAJOR, CUDNN_MINOR,
                                 CUDNN_PATCHLEVEL + 1));
  EXPECT_FALSE(CUDNN_VERSION_MIN(CUDNN_MAJOR + 1, 0, 0));
  EXPECT_TRUE(CUDNN_VERSION_MIN(8, 0, 0));
  const Version v = DecodeVersion(CUDNN_VERSION);
  EXPECT_EQ(CUDNN_MAJOR, v.major);
  EXPECT_EQ(CUDNN_MINOR, v.minor);
  EXPECT_EQ(CUDNN_PATCHLEVEL, v.patch);
}

TEST(CuDNNVersionTest, LoadedLibraryHasTheBuildsMajorVersion) {
  const Version run = DecodeVersion(cudnnGetVersion());
  EXPECT_EQ(CUDNN_MAJOR, run.major) << "cudnnGetVersion() = "
                                    << cudnnGetVersion();
  CheckRuntimeVersionOnce();
  CheckRuntimeVersionOnce();  // logs once; must not fail when repeated
}

TEST(CuDNNStatusTest, MessagesNameTheStatus) {
  EXPECT_NE(std::string::npos,
            StatusMessage(CUDNN_STATUS_BAD_PARAM).find("BAD_PARAM"));
  EXPECT_NE(std::string::npos,
            StatusMessage(CUDNN_STATUS_NOT_SUPPORTED).find("NOT_SUPPORTED"));
#if CUDNN_VERSION_MIN(9, 0, 0)
  // a code upstream's own cudnnGetErrorString table did not know
  EXPECT_NE(std::string::npos,
            StatusMessage(CUDNN_STATUS_BAD_PARAM_NULL_POINTER)
                .find("NULL_POINTER"));
#endif
}

// The DEFAULT engine is cuDNN in GPU mode only; constructing a layer does
// not touch the GPU, so this runs anywhere.
class CuDNNDefaultEngineTest : public ::testing::Test {
 protected:
  CuDNNDefaultEngineTest() : mode_(Caffe::mode()) {}
  virtual ~CuDNNDefaultEngineTest() { Caffe::set_mode(mode_); }

  static LayerParameter Param(const std::string& type) {
    LayerParameter param;
    param.set_name("layer");
    param.set_type(type);
    param.mutable_convolution_param()->add_kernel_size(3);
    param.mutable_convolution_param()->set_num_output(2);
    return param;
  }

  Caffe::Brew mode_;
};

TEST_F(CuDNNDefaultEngineTest, CaffeEngineInCPUMode) {
  Caffe::set_mode(Caffe::CPU);
  shared_ptr<Layer<float> > conv =
      LayerRegistry<float>::CreateLayer(Param("Convolution"));
  EXPECT_TRUE(dynamic_cast<CuDNNConvolutionLayer<float>*>(conv.get()) == NULL);
  shared_ptr<Layer<float> > relu =
      LayerRegistry<float>::CreateLayer(Param("ReLU"));
  EXPECT_TRUE(dynamic_cast<CuDNNReLULayer<float>*>(relu.get()) == NULL);
  // an explicit engine is still honoured
  LayerParameter explicit_cudnn = Param("Convolution");
  explicit_cudnn.mutable_convolution_param()->set_engine(
      ConvolutionParameter_Engine_CUDNN);
  shared_ptr<Layer<float> > forced =
      LayerRegistry<float>::CreateLayer(explicit_cudnn);
  EXPECT_TRUE(dynamic_cast<CuDNNConvolutionLayer<float>*>(forced.get())
              != NULL);
}

TEST_F(CuDNNDefaultEngineTest, CuDNNEngineInGpuMode) {
  Caffe::set_mode(Caffe::GPU);
  shared_ptr<Layer<float> > conv =
      LayerRegistry<float>::CreateLayer(Param("Convolution"));
  EXPECT_TRUE(dynamic_cast<CuDNNConvolutionLayer<float>*>(conv.get()) != NULL);
  shared_ptr<Layer<float> > relu =
      LayerRegistry<float>::CreateLayer(Param("ReLU"));
  EXPECT_TRUE(dynamic_cast<CuDNNReLULayer<float>*>(relu.get()) != NULL);
}
#endif  // USE_CUDNN

}  // namespace cudnn
}  // namespace caffe
