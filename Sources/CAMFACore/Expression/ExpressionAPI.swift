// CONTRACT (to be implemented under Sources/CAMFACore/Expression/): the engine and the
// policy loader program against exactly these names.
//
//   public struct SourcePosition: Sendable, Hashable { line: Int; column: Int }   // 1-based, within the expression text
//   public struct ExpressionError: Error, Sendable, CustomStringConvertible {
//       code: ExpressionError.Code; message: String; position: SourcePosition
//   }
//   public struct Declarations: Sendable {                // the variables an expression may name
//       public init()
//       public mutating func declare(_ name: String, _ type: CELType) -> Int   // returns the slot
//   }
//   public struct Activation: Sendable {                  // runtime values, by slot
//       public init(slotCount: Int); public subscript(slot: Int) -> Value { get set }
//   }
//   public struct EvalError: Error, Sendable, Equatable { message: String }
//   public struct CompiledExpression: Sendable {
//       public let source: String
//       public let resultType: CELType
//       public func evaluate(_ activation: Activation) -> Result<Value, EvalError>
//   }
//   public enum Expression {
//       public static func compile(_ source: String, declarations: Declarations,
//                                  expecting: CELType? = nil) throws(ExpressionError) -> CompiledExpression
//   }
